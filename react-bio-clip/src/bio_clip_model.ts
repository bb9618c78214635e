/**
 * The implementation behind the BioClip interface (private: create it with load()).
 *
 * Per photo, in tf ops inside one tf.tidy (so on the GPU when there is one):
 *   image -> float32 [1, R, R, 3] (squash) -> graph model -> embedding [1, D] (L2-normalized);
 *   the few-shot prototypes are scored on the side.
 * Then one download (the embedding, prototype scores and input stats) and plain JS (scoring.ts)
 * for the label bank, which stays in its stored precision (label_bank.ts):
 *   cosines of the candidate species (all, or restrictTo's rows, gathered once per list),
 *   chunk by chunk; logits = logit_scale * cosines (+ log prior); exact softmax over the
 *   candidates; rank sums up the parent links; top-K per rank. The float32 input checks, the
 *   similarity floors and the user taxa's softmax happen there too.
 */
import * as tf from '@tensorflow/tfjs';

import {BioClipDisposedError, BioClipInputError, BioClipMismatchError} from './errors';
import {PrototypeStore} from './few_shot';
import {LabelBank} from './label_bank';
import {resolvePrior, scoreBank, Scored} from './scoring';
import {ADD_TAXON_OPTIONS, CLASSIFY_OPTIONS, checkOptions, IMAGE_OPTIONS, IMPORT_PROTOTYPES_OPTIONS, SCORING_OPTIONS} from './options';
import {safeL2Normalize} from './precision';
import {checkImage, checkInputValues, inputValueStats, ResizeMethod, toModelInput} from './preprocess';
import {
  AddTaxonOptions, BioClip, Classification, ClassifyEmbeddingOptions, ClassifyOptions, DEFAULT_SPECIES_SIMILARITY_FLOOR,
  DEFAULT_USER_SIMILARITY_FLOOR, ExportManifest, ImageInput, ImageOptions, PrototypesJson, Rank, RANKS, TaxonScore,
  UserTaxonScore,
} from './types';

const DEFAULT_TOP_K = 5;
const DEFAULT_THRESHOLD = 0.5;
const RESTRICTION_CACHE_SIZE = 8;

interface Restriction {
  /** The allowed species' rows, ascending: only these are scored. */
  rows: Int32Array;
  /** Per rank, 1 for a taxon that holds at least one allowed species. */
  allowedTaxa: Record<Rank, Uint8Array>;
  count: number;
}

/** A photo's embedding float32 [1, D] and, for a float32 tensor photo, its inputValueStats. */
interface EmbeddedPhoto {
  embedding: tf.Tensor2D;
  stats: tf.Tensor1D | null;
}

export class BioClipModel implements BioClip {
  readonly embedDim: number;
  readonly resolution: number;
  readonly numSpecies: number;
  /** Set by load() from measureFloatPrecision(). */
  precision: 'float32' | 'float16' = 'float32';
  /**
   * Set by load() on half-float backends: the graph node the output L2-normalizes. The model is
   * then run up to it and normalized by safeL2Normalize (the graph's own sum of squares
   * overflows float16 for a long pre-normalization embedding).
   */
  preNormalization: string | null = null;
  private disposed = false;
  /** float64 [N]: the scores of one photo, reused (scoring is synchronous, so never shared). */
  private scratch: Float64Array | null = null;
  private readonly restrictions = new Map<string, Restriction>();
  private readonly prototypes: PrototypeStore;
  private prototypeTensors: {
    /** float32 [D, P]: centred prototypes; [D, P]: normalized uncentred means; [1, D]: the centre. */
    protoT: tf.Tensor2D; meanT: tf.Tensor2D; centre: tf.Tensor2D; names: string[]; commonNames: string[];
  } | null = null;

  constructor(
      private readonly model: tf.GraphModel, private readonly bank: LabelBank,
      readonly manifest: ExportManifest, private readonly resizeMethod: ResizeMethod,
      modelSha256: string | null) {
    this.embedDim = manifest.embed_dim;
    this.resolution = manifest.resolution;
    this.numSpecies = bank.numSpecies;
    this.prototypes = new PrototypeStore(this.embedDim, modelSha256);
  }

  /** Runs the model once on a blank image: compiles kernels and checks the output width. */
  warmUp(): void {
    const width = tf.tidy(() => {
      const out = this.embedTensor(tf.zeros([1, this.resolution, this.resolution, 3]));
      out.dataSync();
      return out.shape;
    });
    if (width.length !== 2 || width[1] !== this.embedDim) {
      throw new BioClipMismatchError(
          `the model outputs shape [${width}] but the manifest says the embedding is [N, ${this.embedDim}]`);
    }
  }

  private checkAlive(): void {
    if (this.disposed) throw new BioClipDisposedError();
  }

  /** float32 [1, R, R, 3] -> float32 [1, D]. Inside tf.tidy. */
  private embedTensor(input: tf.Tensor4D): tf.Tensor2D {
    if (this.preNormalization) {
      return safeL2Normalize(this.model.execute(input, this.preNormalization) as tf.Tensor2D);
    }
    const out = this.model.predict(input);
    if (!(out instanceof tf.Tensor)) {
      throw new BioClipMismatchError('the model has several outputs; a BioCLIP Lite export has one (the embedding)');
    }
    return out as tf.Tensor2D;
  }

  /** image -> its embedding [1, D] and value checks. Inside tf.tidy. */
  private embedPhoto(image: ImageInput): EmbeddedPhoto {
    const input = toModelInput(image, this.resolution, this.resizeMethod);
    return {embedding: this.embedTensor(input), stats: inputValueStats(image, input)};
  }

  /** embedPhoto's result as one float32 tensor to read back: [D] embedding, then the stats if any. */
  private embedPhotoFlat(image: ImageInput): tf.Tensor1D {
    const {embedding, stats} = this.embedPhoto(image);
    const flat = tf.reshape(embedding, [-1]) as tf.Tensor1D;
    return stats ? tf.concat([flat, stats]) : flat;
  }

  /** Splits embedPhotoFlat's values, refusing the photo if its values fail the checks. */
  private checkedEmbedding(values: Float32Array, where: string, options: ImageOptions): Float32Array {
    if (values.length > this.embedDim) checkInputValues(values.subarray(this.embedDim), where, options.allowUnitRange ?? false);
    return values.length > this.embedDim ? values.slice(0, this.embedDim) : values;
  }

  embed(image: ImageInput, options: ImageOptions = {}): Float32Array {
    this.checkAlive();
    checkOptions(options, IMAGE_OPTIONS, 'embed');
    checkImage(image, 'embed');
    const out = tf.tidy(() => this.embedPhotoFlat(image));
    try {
      return this.checkedEmbedding(out.dataSync() as Float32Array, 'embed', options);
    } finally {
      out.dispose();
    }
  }

  async classify(image: ImageInput, options: ClassifyOptions = {}): Promise<Classification> {
    this.checkAlive();
    checkOptions(options, CLASSIFY_OPTIONS, 'classify');
    checkImage(image, 'classify');
    const plan = this.plan(options, 'classify');
    return this.run(() => this.embedPhoto(image), plan);
  }

  async classifyEmbedding(embedding: Float32Array, options: ClassifyEmbeddingOptions = {}): Promise<Classification> {
    this.checkAlive();
    checkOptions(options, SCORING_OPTIONS, 'classifyEmbedding');
    if (!(embedding instanceof Float32Array) || embedding.length !== this.embedDim) {
      throw new BioClipInputError(
          `classifyEmbedding: expected a Float32Array of length ${this.embedDim}, got ` +
          `${embedding?.constructor?.name ?? typeof embedding} of length ${(embedding as {length?: number})?.length}`);
    }
    const bad = embedding.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new BioClipInputError(`classifyEmbedding: the embedding holds ${embedding[bad]} at index ${bad}`);
    const plan = this.plan(options, 'classifyEmbedding');
    return this.run(() => ({embedding: tf.tensor2d(embedding, [1, this.embedDim]), stats: null}), plan);
  }

  private plan(options: ClassifyOptions, where: string) {
    const floor = (name: 'speciesSimilarityFloor' | 'userSimilarityFloor', fallback: number): number => {
      const value = options[name] ?? fallback;
      if (typeof value !== 'number' || !(value >= -1 && value <= 1)) {
        throw new BioClipInputError(`${where}: ${name} must be a cosine in [-1, 1] (-1 turns it off), got ${value}`);
      }
      return value;
    };
    const speciesFloor = floor('speciesSimilarityFloor', DEFAULT_SPECIES_SIMILARITY_FLOOR);
    const userFloor = floor('userSimilarityFloor', DEFAULT_USER_SIMILARITY_FLOOR);
    const allowUnitRange = options.allowUnitRange ?? false;
    const topK = options.topK ?? DEFAULT_TOP_K;
    if (!Number.isInteger(topK) || topK < 1) throw new BioClipInputError(`classify: topK must be a positive integer, got ${topK}`);
    const threshold = options.threshold ?? DEFAULT_THRESHOLD;
    if (!(threshold >= 0 && threshold <= 1)) throw new BioClipInputError(`classify: threshold must be in [0, 1], got ${threshold}`);
    const ranks = options.ranks ?? [...RANKS];
    for (const rank of ranks) {
      if (!RANKS.includes(rank)) throw new BioClipInputError(`classify: unknown rank "${rank}" (ranks are ${RANKS.join(', ')})`);
    }
    let restriction: Restriction | null = null;
    if (options.restrictTo !== undefined) {
      const names = typeof options.restrictTo === 'string' ? [options.restrictTo] : options.restrictTo;
      if (!Array.isArray(names) || names.length === 0) throw new BioClipInputError('classify: restrictTo must name at least one taxon');
      restriction = this.restriction(names);
    }
    // Every rank gets a top-K (`best` needs each rank's top taxon); only the requested are returned.
    const k = Object.fromEntries(RANKS.map((rank) => [rank, Math.min(topK, this.bank.numTaxa(rank))])) as Record<Rank, number>;
    const prior = resolvePrior(this.bank, options.prior, where);
    return {topK, threshold, ranks, restriction, prior, k, speciesFloor, userFloor, allowUnitRange, where};
  }

  private restriction(names: string[]): Restriction {
    const key = [...names].sort().join('\n');
    const cached = this.restrictions.get(key);
    if (cached) return cached;
    const {mask, count} = this.bank.allowedSpecies(names);
    if (count === 0) throw new BioClipInputError(`classify: restrictTo ${JSON.stringify(names)} holds no species of the label bank`);
    const rows = new Int32Array(count);
    for (let s = 0, j = 0; s < mask.length; ++s) if (mask[s]) rows[j++] = s;
    const allowedTaxa = {} as Record<Rank, Uint8Array>;
    for (const rank of RANKS) {
      const flags = new Uint8Array(this.bank.numTaxa(rank));
      const ancestors = this.bank.ancestors[rank];
      for (let s = 0; s < mask.length; ++s) if (mask[s]) flags[ancestors[s]] = 1;
      allowedTaxa[rank] = flags;
    }
    const restriction: Restriction = {rows, allowedTaxa, count};
    if (this.restrictions.size >= RESTRICTION_CACHE_SIZE) {
      this.restrictions.delete(this.restrictions.keys().next().value!);
    }
    this.restrictions.set(key, restriction);
    return restriction;
  }

  private async run(makeEmbedding: () => EmbeddedPhoto, plan: ReturnType<BioClipModel['plan']>): Promise<Classification> {
    const user = this.prototypeTensors;
    const [values, checked] = tf.tidy(() => {
      const {embedding, stats} = makeEmbedding();
      const floats: tf.Tensor1D[] = [tf.reshape(embedding, [-1])];
      if (user) {
        const centred = tf.sub(embedding, user.centre);
        const query = tf.div(centred, tf.maximum(tf.norm(centred), 1e-12));
        floats.push(tf.matMul(query, user.protoT).squeeze([0]) as tf.Tensor1D);
        const unit = tf.div(embedding, tf.maximum(tf.norm(embedding), 1e-12));
        floats.push(tf.matMul(unit, user.meanT).squeeze([0]) as tf.Tensor1D);
      }
      if (stats) floats.push(stats);
      return [floats.length > 1 ? tf.concat(floats) : floats[0], stats !== null] as const;
    });
    let floatData: Float32Array;
    try {
      floatData = await values.data() as Float32Array;
    } finally {
      values.dispose();
    }
    if (checked) checkInputValues(floatData.subarray(floatData.length - 3), plan.where, plan.allowUnitRange);
    const embedding = floatData.slice(0, this.embedDim);
    if (!this.scratch) this.scratch = new Float64Array(this.bank.numSpecies);
    const scored = scoreBank(this.bank, embedding, plan.restriction ? plan.restriction.rows : null, plan.prior,
                             plan.k, this.scratch, plan.where);
    return this.answer(embedding, scored, floatData.subarray(this.embedDim), plan, user);
  }

  private score(rank: Rank, index: number, probability: number): TaxonScore {
    return {
      rank, name: this.bank.shortName(rank, index), taxon: this.bank.fullName(rank, index), index,
      commonName: this.bank.commonName(rank, index), probability, lineage: this.bank.lineage(rank, index),
    };
  }

  /** floats: the prototype scores (cosines to the centred prototypes, then to the means), then the stats. */
  private answer(embedding: Float32Array, scored: Scored, floats: Float32Array, plan: ReturnType<BioClipModel['plan']>,
                 user: BioClipModel['prototypeTensors']): Classification {
    const {restriction, threshold, ranks, speciesFloor, userFloor} = plan;
    const f = 0;
    const tops = {} as Record<Rank, TaxonScore[]>;
    for (const rank of RANKS) {
      const list: TaxonScore[] = [];
      const {indices, values} = scored.tops[rank];
      for (let j = 0; j < indices.length; ++j) {
        if (restriction && !restriction.allowedTaxa[rank][indices[j]]) continue;
        list.push(this.score(rank, indices[j], values[j]));
      }
      tops[rank] = list;
    }
    const similarity = scored.similarity;
    const abstained = similarity < speciesFloor;
    let best: TaxonScore | null = null;
    for (let depth = RANKS.length - 1; depth >= 0 && !best && !abstained; --depth) {
      const top = tops[RANKS[depth]][0];
      if (top && top.probability >= threshold) best = top;
    }
    const userTaxa: UserTaxonScore[] = [];
    if (user) {
      const p = user.names.length;
      // Softmax of logit_scale * similarity over the taxa that reach the floor only: with one
      // taxon it is 1 when the photo is like it, and 0 ("none of these") when it is not.
      let top = -Infinity;
      for (let j = 0; j < p; ++j) if (floats[f + p + j] >= userFloor) top = Math.max(top, floats[f + j]);
      const weights = Array.from({length: p}, (_, j) =>
        (floats[f + p + j] >= userFloor ? Math.exp(this.bank.logitScale * (floats[f + j] - top)) : 0));
      const total = weights.reduce((a, b) => a + b, 0);
      user.names.forEach((name, j) => userTaxa.push({
        name, commonName: user.commonNames[j] || null, similarity: floats[f + j], cosine: floats[f + p + j],
        probability: total > 0 ? weights[j] / total : 0,
      }));
      userTaxa.sort((a, b) => b.similarity - a.similarity);
    }
    const userBest = userTaxa.find((u) => u.cosine >= userFloor) ?? null;
    const rankLists: Partial<Record<Rank, TaxonScore[]>> = {};
    for (const rank of ranks) rankLists[rank] = tops[rank];
    return {species: tops.species, ranks: rankLists, best, similarity, abstained, userTaxa, userBest, embedding};
  }

  async addTaxon(name: string, images: ImageInput[], options: AddTaxonOptions = {}): Promise<void> {
    this.checkAlive();
    checkOptions(options, ADD_TAXON_OPTIONS, `addTaxon("${name}")`);
    if (!Array.isArray(images) || images.length === 0) throw new BioClipInputError(`addTaxon("${name}"): give an array of at least one photo`);
    images.forEach((image, n) => checkImage(image, `addTaxon("${name}") photo ${n}`));
    const embeddings: Float32Array[] = [];
    for (const [n, image] of images.entries()) {
      const out = tf.tidy(() => this.embedPhotoFlat(image));
      try {
        embeddings.push(this.checkedEmbedding(await out.data() as Float32Array, `addTaxon("${name}") photo ${n}`, options));
      } finally {
        out.dispose();
      }
    }
    this.prototypes.add(name, embeddings, options.commonName);
    this.rebuildPrototypes();
  }

  removeTaxon(name: string): boolean {
    this.checkAlive();
    const removed = this.prototypes.remove(name);
    if (removed) this.rebuildPrototypes();
    return removed;
  }

  get userTaxa(): string[] {
    return this.prototypes.names;
  }

  exportPrototypes(): PrototypesJson {
    return this.prototypes.toJson();
  }

  importPrototypes(json: PrototypesJson | string, options: {replace?: boolean} = {}): void {
    this.checkAlive();
    checkOptions(options, IMPORT_PROTOTYPES_OPTIONS, 'importPrototypes');
    this.prototypes.fromJson(json, options.replace ?? false);
    this.rebuildPrototypes();
  }

  /** Swaps the prototype tensors synchronously, so an in-flight classify never sees a half state. */
  private rebuildPrototypes(): void {
    const old = this.prototypeTensors;
    this.prototypeTensors = null;
    if (this.prototypes.size > 0) {
      const {names, commonNames, prototypes, centre, means} = this.prototypes.compute();
      this.prototypeTensors = {
        protoT: tf.tidy(() => tf.transpose(tf.tensor2d(prototypes, [names.length, this.embedDim]))),
        meanT: tf.tidy(() => tf.transpose(tf.tensor2d(means, [names.length, this.embedDim]))),
        centre: tf.tensor2d(centre, [1, this.embedDim]),
        names, commonNames,
      };
    }
    if (old) disposePrototypeTensors(old);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.model.dispose();
    this.restrictions.clear();
    this.scratch = null;
    if (this.prototypeTensors) {
      disposePrototypeTensors(this.prototypeTensors);
      this.prototypeTensors = null;
    }
  }
}

function disposePrototypeTensors(t: {protoT: tf.Tensor; meanT: tf.Tensor; centre: tf.Tensor}): void {
  t.protoT.dispose();
  t.meanT.dispose();
  t.centre.dispose();
}
