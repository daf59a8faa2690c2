// Kubernetes label selectors (metav1.LabelSelector): matchLabels and
// matchExpressions, ANDed; an empty selector matches everything. Validated
// once, then matched many times. An unknown field is an error, not ignored:
// a misspelt `matchLabels` would otherwise select everything.
import type { LabelSelector } from './types.js';

export type LabelMatcher = (labels: Record<string, string>) => boolean;

export class SelectorError extends Error {}

/** Compile a selector; throws SelectorError saying what is wrong with it. */
export function compileSelector(sel: LabelSelector): LabelMatcher {
  if (sel === null || typeof sel !== 'object') throw new SelectorError('a label selector must be an object');
  const unknown = (o: object, known: string[]): string | undefined =>
    Object.entries(o).find(([k, v]) => v !== undefined && !known.includes(k))?.[0];
  const bad = unknown(sel, ['matchLabels', 'matchExpressions']);
  if (bad !== undefined) throw new SelectorError(`unknown field ${JSON.stringify(bad)} (matchLabels, matchExpressions)`);
  const tests: LabelMatcher[] = [];
  const ml = sel.matchLabels ?? {};
  if (typeof ml !== 'object' || ml === null) throw new SelectorError('matchLabels must be a map');
  for (const [k, v] of Object.entries(ml)) {
    if (typeof v !== 'string') throw new SelectorError(`matchLabels.${k} must be a string`);
    tests.push((l) => l[k] === v);
  }
  const exprs = sel.matchExpressions ?? [];
  if (!Array.isArray(exprs)) throw new SelectorError('matchExpressions must be a list');
  for (const e of exprs) {
    if (e === null || typeof e !== 'object' || typeof e.key !== 'string' || e.key === '') {
      throw new SelectorError('a matchExpressions entry needs a key');
    }
    const { key } = e;
    const badExpr = unknown(e, ['key', 'operator', 'values']);
    if (badExpr !== undefined) throw new SelectorError(`matchExpressions ${key}: unknown field ${JSON.stringify(badExpr)} (key, operator, values)`);
    const values = e.values ?? [];
    if (!Array.isArray(values) || values.some((v) => typeof v !== 'string')) {
      throw new SelectorError(`matchExpressions ${key}: values must be a list of strings`);
    }
    switch (e.operator) {
      case 'In':
      case 'NotIn': {
        if (values.length === 0) throw new SelectorError(`matchExpressions ${key} ${e.operator}: values must not be empty`);
        const set = new Set(values);
        tests.push(
          e.operator === 'In'
            ? (l) => Object.hasOwn(l, key) && set.has(l[key]!)
            : (l) => !Object.hasOwn(l, key) || !set.has(l[key]!),
        );
        break;
      }
      case 'Exists':
      case 'DoesNotExist':
        if (values.length !== 0) throw new SelectorError(`matchExpressions ${key} ${e.operator}: values must be empty`);
        tests.push(e.operator === 'Exists' ? (l) => Object.hasOwn(l, key) : (l) => !Object.hasOwn(l, key));
        break;
      default:
        throw new SelectorError(`matchExpressions ${key}: unknown operator ${JSON.stringify(e.operator)} (In, NotIn, Exists, DoesNotExist)`);
    }
  }
  if (tests.length === 0) return () => true;
  return (labels) => tests.every((t) => t(labels));
}
