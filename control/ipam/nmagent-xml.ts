// A deliberately tiny XML reader for exactly one document: the wireserver's
// getinterfaceinfov1 answer (<Interfaces><Interface><IPSubnet><IPAddress/>).
// It never expands anything: DTDs, entity declarations, CDATA and processing
// instructions are refused outright, nesting and sizes are capped, and every
// scan is a single forward pass, so hostile input fails fast in bounded memory.
import { PoolSourceError } from '../errors.js';
import { quote, type RawInterface } from './interfaces-doc.js';

export const MAX_XML_CHARS = 1 << 20;
const MAX_DEPTH = 16;
const MAX_NAME_LENGTH = 64;
const MAX_ATTRIBUTES = 32;
const MAX_ATTRIBUTE_VALUE = 256;
const MAX_DECLARATION = 256;

const PREDEFINED_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** Parse the getinterfaceinfov1 document. `origin` (the URL) prefixes every error message. */
export function parseInterfacesXml(text: string, origin: string): RawInterface[] {
  return new InterfacesXmlReader(text, origin).read();
}

type Attributes = Map<string, string>;

class InterfacesXmlReader {
  private pos = 0;
  private readonly open: string[] = [];
  private readonly interfaces: RawInterface[] = [];
  private sawRoot = false;

  constructor(
    private readonly text: string,
    private readonly origin: string,
  ) {}

  read(): RawInterface[] {
    const { text } = this;
    if (text.length > MAX_XML_CHARS) this.fail(`document is larger than ${MAX_XML_CHARS} characters`);
    if (text.charCodeAt(0) === 0xfeff) this.pos = 1; // BOM
    this.skipWhitespace();
    if (text.startsWith('<?xml', this.pos)) this.skipDeclaration();
    for (;;) {
      const next = text.indexOf('<', this.pos);
      this.expectOnlyWhitespace(next < 0 ? text.length : next);
      if (next < 0) break;
      this.pos = next;
      if (text.startsWith('<!--', next)) this.skipComment();
      else if (text.startsWith('<!', next)) this.fail('<!DOCTYPE>, <!ENTITY> and <![CDATA[ are not allowed');
      else if (text.startsWith('<?', next)) this.fail('processing instructions are not allowed');
      else if (text.startsWith('</', next)) this.readEndTag();
      else this.readStartTag();
    }
    const unclosed = this.open.at(-1);
    if (unclosed !== undefined) this.fail(`document ends inside <${unclosed}> (truncated?)`);
    if (!this.sawRoot) this.fail('no <Interfaces> element (empty or truncated document)');
    return this.interfaces;
  }

  private fail(message: string): never {
    throw new PoolSourceError(`${this.origin}: bad interface XML at offset ${this.pos}: ${message}`);
  }

  private skipDeclaration(): void {
    const end = this.text.indexOf('?>', this.pos);
    if (end < 0) this.fail('unterminated <?xml declaration (truncated?)');
    if (end - this.pos > MAX_DECLARATION) this.fail('<?xml declaration is too long');
    this.pos = end + 2;
  }

  private skipComment(): void {
    const end = this.text.indexOf('-->', this.pos + 4);
    if (end < 0) this.fail('unterminated comment (truncated?)');
    this.pos = end + 3;
  }

  private expectOnlyWhitespace(end: number): void {
    for (let i = this.pos; i < end; i++) {
      if (!isXmlWhitespace(this.text.charCodeAt(i))) {
        this.pos = i;
        this.fail(`unexpected text ${quote(this.text.slice(i, Math.min(end, i + 32)))}`);
      }
    }
    this.pos = end;
  }

  private skipWhitespace(): void {
    while (this.pos < this.text.length && isXmlWhitespace(this.text.charCodeAt(this.pos))) this.pos++;
  }

  private readName(): string {
    const start = this.pos;
    const { text } = this;
    if (start >= text.length) this.fail('document ends inside a tag (truncated?)');
    if (!isNameStart(text.charCodeAt(start))) this.fail(`expected a name, found ${quote(text[start])}`);
    let end = start + 1;
    while (end < text.length && isNameChar(text.charCodeAt(end))) {
      if (end - start >= MAX_NAME_LENGTH) this.fail(`name longer than ${MAX_NAME_LENGTH} characters`);
      end++;
    }
    this.pos = end;
    return text.slice(start, end);
  }

  private expectChar(char: string): void {
    if (this.pos >= this.text.length) this.fail('document ends inside a tag (truncated?)');
    if (this.text[this.pos] !== char) this.fail(`expected ${quote(char)}, found ${quote(this.text[this.pos])}`);
    this.pos++;
  }

  private readEndTag(): void {
    this.pos += 2;
    const name = this.readName();
    this.skipWhitespace();
    this.expectChar('>');
    const top = this.open.pop();
    if (top === undefined) this.fail(`</${name}> closes nothing`);
    if (top !== name) this.fail(`</${name}> does not close <${top}>`);
  }

  private readStartTag(): void {
    this.pos += 1;
    const name = this.readName();
    const attributes: Attributes = new Map();
    let selfClosing = false;
    for (;;) {
      const before = this.pos;
      this.skipWhitespace();
      if (this.pos >= this.text.length) this.fail(`document ends inside <${name}> tag (truncated?)`);
      if (this.text.startsWith('/>', this.pos)) {
        this.pos += 2;
        selfClosing = true;
        break;
      }
      if (this.text.startsWith('>', this.pos)) {
        this.pos += 1;
        break;
      }
      if (this.pos === before) this.fail(`expected whitespace, ">" or "/>" in <${name}>`);
      this.readAttribute(name, attributes);
    }
    this.enter(name, attributes);
    if (!selfClosing) {
      if (this.open.length >= MAX_DEPTH) this.fail(`elements nested deeper than ${MAX_DEPTH}`);
      this.open.push(name);
    }
  }

  private readAttribute(element: string, attributes: Attributes): void {
    if (attributes.size >= MAX_ATTRIBUTES) this.fail(`<${element}> has more than ${MAX_ATTRIBUTES} attributes`);
    const name = this.readName();
    if (attributes.has(name)) this.fail(`<${element}> repeats attribute ${name}`);
    this.skipWhitespace();
    this.expectChar('=');
    this.skipWhitespace();
    const quoteChar = this.text[this.pos];
    if (quoteChar !== '"' && quoteChar !== "'") this.fail(`attribute ${name} of <${element}> is not quoted`);
    const end = this.text.indexOf(quoteChar, this.pos + 1);
    if (end < 0) this.fail(`attribute ${name} of <${element}> is unterminated (truncated?)`);
    if (end - this.pos - 1 > MAX_ATTRIBUTE_VALUE) this.fail(`attribute ${name} of <${element}> is too long`);
    const raw = this.text.slice(this.pos + 1, end);
    if (raw.includes('<')) this.fail(`attribute ${name} of <${element}> contains "<"`);
    attributes.set(name, this.decodeEntities(raw));
    this.pos = end + 1;
  }

  private decodeEntities(raw: string): string {
    if (!raw.includes('&')) return raw;
    return raw.replace(/&([^;&]{0,8});?/g, (match, name: string) => {
      const value = match.endsWith(';') ? PREDEFINED_ENTITIES[name] : undefined;
      if (value === undefined) this.fail(`entity reference ${quote(match)} is not allowed (only &amp; &lt; &gt; &quot; &apos;)`);
      return value;
    });
  }

  /** The document's schema: which element may appear where, and what it contributes. */
  private enter(name: string, attributes: Attributes): void {
    const parent = this.open.at(-1);
    if (parent === undefined) {
      if (this.sawRoot) this.fail(`second root element <${name}>`);
      if (name !== 'Interfaces') this.fail(`root element is <${name}>, expected <Interfaces>`);
      this.sawRoot = true;
    } else if (parent === 'Interfaces' && name === 'Interface') {
      this.interfaces.push({
        macAddress: this.required(attributes, name, 'MacAddress'),
        isPrimary: this.boolean(attributes, name, 'IsPrimary'),
        subnets: [],
      });
    } else if (parent === 'Interface' && name === 'IPSubnet') {
      this.interfaces.at(-1)!.subnets.push({ prefix: this.required(attributes, name, 'Prefix'), addresses: [] });
    } else if (parent === 'IPSubnet' && name === 'IPAddress') {
      this.interfaces.at(-1)!.subnets.at(-1)!.addresses.push({
        address: this.required(attributes, name, 'Address'),
        isPrimary: this.boolean(attributes, name, 'IsPrimary'),
      });
    } else {
      this.fail(`unexpected element <${name}> inside <${parent}>`);
    }
  }

  private required(attributes: Attributes, element: string, name: string): string {
    const value = attributes.get(name);
    if (value === undefined) this.fail(`<${element}> lacks the ${name} attribute`);
    return value;
  }

  /** Go's strconv.ParseBool spellings, which is what the original decoder accepted; absent means false. */
  private boolean(attributes: Attributes, element: string, name: string): boolean {
    const value = attributes.get(name);
    if (value === undefined) return false;
    if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true;
    if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false;
    return this.fail(`<${element}> ${name}=${quote(value)} is not a boolean`);
  }
}

function isXmlWhitespace(code: number): boolean {
  return code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d;
}

function isNameStart(code: number): boolean {
  return (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a) || code === 0x5f || code === 0x3a;
}

function isNameChar(code: number): boolean {
  return isNameStart(code) || (code >= 0x30 && code <= 0x39) || code === 0x2d || code === 0x2e;
}
