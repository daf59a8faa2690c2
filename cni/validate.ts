// Small readers for untrusted JSON. Each failure is an InvalidConfigError
// naming the field's full path, what it must be, and what it was.
import path from 'node:path';
import { InvalidConfigError } from './errors.js';

export type Json = Record<string, unknown>;

export function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A value as an error message shows it: strings in single quotes, escaped and cut short. */
export function shown(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') {
    const cut = v.length > 80 ? `${v.slice(0, 80)}...` : v;
    return `'${JSON.stringify(cut).slice(1, -1)}'`;
  }
  const text = JSON.stringify(v) ?? typeof v; // undefined, a function or a symbol
  return text.length > 100 ? `${text.slice(0, 100)}...` : text;
}

export function invalid(field: string, want: string, got: unknown): InvalidConfigError {
  return new InvalidConfigError(`${field} must be ${want}; got ${shown(got)}`);
}

/** A field reader over one JSON object; `prefix` makes messages say e.g. "ipam.subnet". */
export class Fields {
  constructor(
    readonly obj: Json,
    readonly prefix = '',
  ) {}

  name(key: string): string {
    return `${this.prefix}${key}`;
  }

  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  string(key: string): string | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw invalid(this.name(key), 'a string', v);
    return v;
  }

  nonEmpty(key: string): string | undefined {
    const v = this.string(key);
    if (v === '') throw invalid(this.name(key), 'a non-empty string', v);
    return v;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[]): T | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) throw invalid(this.name(key), `one of ${allowed.join(', ')}`, v);
    return v as T;
  }

  boolean(key: string): boolean | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') throw invalid(this.name(key), 'true or false', v);
    return v;
  }

  integer(key: string, min: number, max: number): number | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw invalid(this.name(key), `an integer from ${min} to ${max}`, v);
    return v;
  }

  absolutePath(key: string): string | undefined {
    const v = this.string(key);
    if (v === undefined) return undefined;
    if (!path.isAbsolute(v) || v.includes('\0')) throw invalid(this.name(key), 'an absolute path', v);
    return path.normalize(v);
  }

  stringList(key: string): string[] | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw invalid(this.name(key), 'a list of strings', v);
    return v;
  }

  object(key: string): Json | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (!isObject(v)) throw invalid(this.name(key), 'an object', v);
    return v;
  }
}
