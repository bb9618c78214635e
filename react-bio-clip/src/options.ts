/**
 * Option names that each public function accepts. A misspelt option (`{topk: 3}` for
 * `{topK: 3}`) would otherwise be ignored without a word, so every public function that takes
 * options refuses names it does not know.
 */
import {BioClipInputError} from './errors';

export const LOAD_OPTIONS = ['model', 'labels', 'manifest', 'resize', 'skipWarmup', 'onWarning'] as const;
/** loadFromDirectory reads model, labels and manifest itself. */
export const DIRECTORY_LOAD_OPTIONS = ['resize', 'skipWarmup', 'onWarning'] as const;
export const IMAGE_OPTIONS = ['allowUnitRange'] as const;
export const SCORING_OPTIONS = ['topK', 'ranks', 'threshold', 'restrictTo', 'prior', 'speciesSimilarityFloor', 'userSimilarityFloor'] as const;
export const CLASSIFY_OPTIONS = [...SCORING_OPTIONS, ...IMAGE_OPTIONS] as const;
export const ADD_TAXON_OPTIONS = ['commonName', ...IMAGE_OPTIONS] as const;
export const IMPORT_PROTOTYPES_OPTIONS = ['replace'] as const;

/** Edit distance, for "did you mean". Option names are short, so the quadratic table is fine. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({length: b.length + 1}, (_, j) => j);
  for (let i = 1; i <= a.length; ++i) {
    const current = [i];
    for (let j = 1; j <= b.length; ++j) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length];
}

function suggestion(name: string, allowed: readonly string[]): string | null {
  const lower = name.toLowerCase();
  const sameCase = allowed.find((a) => a.toLowerCase() === lower);
  if (sameCase) return sameCase;
  let best: string | null = null;
  let bestDistance = 3;  // at most two edits away
  for (const a of allowed) {
    const d = editDistance(lower, a.toLowerCase());
    if (d < bestDistance) {
      best = a;
      bestDistance = d;
    }
  }
  return best;
}

/** The typed error for options that are not an object or hold names `allowed` lacks; null if fine. */
export function optionsError(options: unknown, allowed: readonly string[], where: string): BioClipInputError | null {
  if (options === undefined) return null;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    return new BioClipInputError(`${where}: options must be an object, got ${options === null ? 'null' : Array.isArray(options) ? 'an array' : typeof options}`);
  }
  const unknown = Object.keys(options).filter((key) => !allowed.includes(key));
  if (unknown.length === 0) return null;
  const described = unknown.map((key) => {
    const near = suggestion(key, allowed);
    return near ? `"${key}" (did you mean "${near}"?)` : `"${key}"`;
  });
  return new BioClipInputError(
      `${where}: unknown option${unknown.length > 1 ? 's' : ''} ${described.join(', ')}; ` +
      `the options are ${allowed.join(', ')}`);
}

/** Throws optionsError's error, if any. */
export function checkOptions(options: unknown, allowed: readonly string[], where: string): void {
  const error = optionsError(options, allowed, where);
  if (error) throw error;
}
