/**
 * Scoring a photo's embedding against the label bank without tensors (every runtime, Hermes
 * included): cosines chunk by chunk from the stored rows (the bank's WebAssembly int8 kernel
 * where there is one, plain JS elsewhere), the
 * exact softmax over the candidate species (max-shifted, in float64), an optional per-species
 * prior, the per-rank sums up the parent links and the top-K per rank.
 *
 * Candidates are all species, or the rows of a restriction (gathered once per restrictTo list),
 * so the time scales with the number of candidates, not with the bank.
 */
import {BioClipInputError} from './errors';
import {LabelBank} from './label_bank';
import {Rank, RANKS} from './types';

export interface TopList {
  indices: number[];
  values: number[];
}

export interface Scored {
  /** Per rank: the top-K taxa (species rows for species) and their probabilities. */
  tops: Record<Rank, TopList>;
  /** The best cosine among the candidates (the species similarity floor compares it). */
  similarity: number;
}

/** The k largest of values[0..count) (ties: the lower index first), largest first. */
export function topK(values: Float64Array, count: number, k: number): TopList {
  const indices: number[] = [];
  const top: number[] = [];
  for (let i = 0; i < count; ++i) {
    const v = values[i];
    if (top.length === k && !(v > top[k - 1])) continue;
    let at = top.length === k ? k - 1 : top.length;
    while (at > 0 && v > top[at - 1]) {
      if (at < k) {
        top[at] = top[at - 1];
        indices[at] = indices[at - 1];
      }
      --at;
    }
    top[at] = v;
    indices[at] = i;
  }
  return {indices, values: top};
}

/**
 * A prior as float32 [numSpecies] weights, from the weights themselves or a map of taxon name ->
 * weight (names at any rank; the most specific named taxon above a species gives its weight,
 * species under no named taxon get 0). Validates; null means no prior.
 */
export function resolvePrior(bank: LabelBank, prior: unknown, where: string): Float32Array | null {
  if (prior === undefined || prior === null) return null;
  const bad = (what: string): never => {
    throw new BioClipInputError(`${where}: prior ${what}`);
  };
  const checkWeight = (w: unknown, at: string) => {
    if (typeof w !== 'number' || !Number.isFinite(w) || w < 0) bad(`${at} is ${String(w)}; weights must be finite numbers >= 0`);
  };
  if (prior instanceof Float32Array || prior instanceof Float64Array) {
    if (prior.length !== bank.numSpecies) bad(`has ${prior.length} weights but the label bank has ${bank.numSpecies} species`);
    for (let i = 0; i < prior.length; ++i) checkWeight(prior[i], `[${i}]`);
    return prior instanceof Float32Array ? prior : Float32Array.from(prior);
  }
  let entries: Array<[unknown, unknown]>;
  if (prior instanceof Map) entries = [...prior.entries()];
  else if (typeof prior === 'object' && !Array.isArray(prior) && !ArrayBuffer.isView(prior)) entries = Object.entries(prior as object);
  else return bad(`must be a Float32Array of ${bank.numSpecies} weights (one per species) or a map of taxon name -> weight, got ${Array.isArray(prior) ? 'an array' : ArrayBuffer.isView(prior) ? prior.constructor.name : typeof prior}`);
  if (entries.length === 0) bad('names no taxon');
  const perRank = new Map<Rank, Float64Array>();
  for (const [name, weight] of entries) {
    if (typeof name !== 'string') bad(`keys must be taxon names, got ${typeof name}`);
    checkWeight(weight, `"${name}"`);
    const {rank, index} = bank.resolve(name as string, `${where}: prior`);
    if (!perRank.has(rank)) perRank.set(rank, new Float64Array(bank.numTaxa(rank)).fill(NaN));
    perRank.get(rank)![index] = weight as number;
  }
  const out = new Float32Array(bank.numSpecies);
  const ranks = [...RANKS].reverse().filter((rank) => perRank.has(rank));
  for (let s = 0; s < bank.numSpecies; ++s) {
    for (const rank of ranks) {
      const w = perRank.get(rank)![bank.ancestors[rank][s]];
      if (w === w) {  // not NaN: this rank names the species' ancestor
        out[s] = w;
        break;
      }
    }
  }
  return out;
}

/** Per bank, one zeroed-per-call float64 buffer per rank above species (no allocation per photo). */
const rankSums = new WeakMap<LabelBank, Record<Rank, Float64Array>>();

function zeroedRankSums(bank: LabelBank): Record<Rank, Float64Array> {
  let sums = rankSums.get(bank);
  if (!sums) {
    sums = {} as Record<Rank, Float64Array>;
    for (const rank of RANKS.slice(0, -1)) sums[rank] = new Float64Array(bank.numTaxa(rank));
    rankSums.set(bank, sums);
  } else {
    for (const rank of RANKS.slice(0, -1)) sums[rank].fill(0);
  }
  return sums;
}

/**
 * Scores `embedding` against the candidate species (`species` rows, or all when null).
 * scratch: a reusable float64 buffer (at least the candidate count), to allocate nothing per photo.
 *
 * Three passes over the candidates, whatever the number of ranks: cosines (the bank's kernel);
 * logits in place, with the best cosine and the largest logit; exp(logit - max) in place, their
 * total and the genus sums. Each rank above genus then sums its children up the parent links
 * (genera, then families, ...: far fewer than the species), and only the top-K are divided by
 * the total. Exact softmax up to float64 rounding.
 */
export function scoreBank(bank: LabelBank, embedding: Float32Array, species: Int32Array | null,
                          prior: Float32Array | null, k: Record<Rank, number>, scratch: Float64Array | null,
                          where: string): Scored {
  const count = species ? species.length : bank.numSpecies;
  const values = bank.cosines(embedding, species, scratch ?? undefined);
  const scale = bank.logitScale;
  let similarity = -Infinity;
  let maxLogit = -Infinity;
  for (let i = 0; i < count; ++i) {
    const c = values[i];
    let logit = scale * c;
    if (prior) {
      const w = prior[species ? species[i] : i];
      if (!(w > 0)) {
        values[i] = -Infinity;  // weight 0: exp gives exactly 0 below
        continue;
      }
      logit += Math.log(w);
    }
    if (c > similarity) similarity = c;
    if (logit > maxLogit) maxLogit = logit;
    values[i] = logit;
  }
  if (maxLogit === -Infinity) {
    throw new BioClipInputError(`${where}: the prior gives weight 0 to every ${species ? 'allowed ' : ''}species`);
  }
  const sums = zeroedRankSums(bank);
  const genera = sums.genus;
  const genusOf = bank.parents.species;
  let total = 0;
  if (species) {
    for (let i = 0; i < count; ++i) {
      const e = Math.exp(values[i] - maxLogit);
      values[i] = e;
      total += e;
      genera[genusOf[species[i]]] += e;
    }
  } else {
    for (let i = 0; i < count; ++i) {
      const e = Math.exp(values[i] - maxLogit);
      values[i] = e;
      total += e;
      genera[genusOf[i]] += e;
    }
  }
  for (let depth = RANKS.length - 3; depth >= 0; --depth) {
    const into = sums[RANKS[depth]];
    const from = sums[RANKS[depth + 1]];
    const parentOf = bank.parents[RANKS[depth + 1]];
    for (let t = 0; t < from.length; ++t) into[parentOf[t]] += from[t];
  }
  const normalized = (top: TopList): TopList => {
    for (let j = 0; j < top.values.length; ++j) top.values[j] /= total;
    return top;
  };
  const tops = {} as Record<Rank, TopList>;
  const speciesTop = normalized(topK(values, count, k.species));
  if (species) speciesTop.indices = speciesTop.indices.map((i) => species[i]);
  tops.species = speciesTop;
  for (const rank of RANKS.slice(0, -1)) tops[rank] = normalized(topK(sums[rank], sums[rank].length, k[rank]));
  return {tops, similarity};
}
