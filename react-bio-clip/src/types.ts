/** Public types of react-bio-clip. Everything here is part of the API. */
import type * as tf from '@tensorflow/tfjs';

/** The seven ranks, shallow to deep. Same order everywhere (docs/FORMATS.md). */
export const RANKS = ['kingdom', 'phylum', 'class', 'order', 'family', 'genus', 'species'] as const;
export type Rank = typeof RANKS[number];

/**
 * Raw interleaved pixels, row-major, 0..255: RGB (length width*height*3) or RGBA
 * (width*height*4; alpha is dropped). A canvas ImageData or a decoded JPEG both fit.
 */
export interface PixelData {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
}

/**
 * What embed/classify/addTaxon accept: a tf.Tensor3D [H, W, 3|4] (int32 or float32, values
 * 0..255, e.g. a camera frame or tf.browser.fromPixels) or raw PixelData. Any size: it is
 * squashed to the model's R x R (the teacher's geometry: no crop).
 */
export type ImageInput = tf.Tensor3D | PixelData;

/** Bytes of a file: as fetched, bundled or read from disk. */
export type Bytes = ArrayBuffer | Uint8Array;

/** manifest.json of an export directory (docs/FORMATS.md section 4). Extra keys are kept. */
export interface ExportManifest {
  /** "bioclip-lite-export" */
  format?: string;
  format_version: number;
  embed_dim: number;
  resolution: number;
  preprocessing: {
    resize: string;
    interpolation: string;
    mean: number[];
    std: number[];
    input: string;
  };
  teacher?: {id?: string; real_weights?: boolean; [key: string]: unknown};
  /** sha256 (and byte size) per file, keyed by the path relative to the export directory. */
  files?: {[relativePath: string]: {sha256: string; bytes?: number}};
  /** Null when the export ships no label bank. */
  label_bank?: {num_species: number; dtype: string; [key: string]: unknown} | null;
  [key: string]: unknown;
}

/** One rank's table in the label bank: row i is taxon i of that rank. */
export interface RankTable {
  /** Full lineage names, unique per rank ("Animalia Chordata Aves"). */
  names: string[];
  /** Row in the previous rank's table; -1 for kingdom. */
  parents: number[];
  /** May be empty strings. */
  common_names: string[];
}

/** labels/label_bank.json, format version 2 (docs/FORMATS.md section 4). Holds no per-taxon strings. */
export interface LabelBankJson {
  format?: string;
  format_version: number;
  embed_dim: number;
  /** The same as rows.dtype. */
  dtype?: string;
  /** The multiplier itself (exp already applied, about 100 for BioCLIP). */
  logit_scale: number;
  ranks: string[];
  /** Taxa per rank. */
  counts: {[rank: string]: number};
  num_species: number;
  /**
   * Where the species rows sit in label_bank.bin (little-endian), row-major
   * [num_species, stored_dim]: int8, int4 (two per byte, low nibble first) or float16 at byte
   * `offset`; int8/int4 have one float32 scale per row at `scales_offset` (row ~= q * scale).
   */
  rows: {
    file: string;
    dtype: 'int8' | 'int4' | 'float16' | 'float32';
    stored_dim: number;
    offset: number;
    scales_offset?: number;
    bytes?: number;
  };
  /** Rows store P^T (x - mean): a query q scores q . mean + (q @ P) . row. P float32 [D, d]. */
  projection?: {file: string; offset: number; shape: [number, number]; mean_offset: number} | null;
  /** names.bin: per rank, parents int32 [N], offsets uint32 [N + 1] and the leaf names' UTF-8 blob. */
  names: {file: string; ranks: {[rank: string]: {parents_offset: number; offsets_offset: number; blob_offset: number; blob_bytes: number}}; [key: string]: unknown};
  /** common_names.bin (optional file): per rank, offsets and blob. Null when no taxon has one. */
  common_names?: {file: string; ranks: {[rank: string]: {offsets_offset: number; blob_offset: number; blob_bytes: number}}} | null;
  /** Byte size and sha256 of each file of the bank, by file name. */
  files?: {[name: string]: {bytes: number; sha256: string}};
  [key: string]: unknown;
}

/**
 * The device label bank. Either the URL of label_bank.json (the other files are found next to
 * it, by the names the JSON gives; common_names.bin is fetched when the bank has one), or the
 * files themselves: `json` as a URL, raw bytes or the parsed object (e.g.
 * `require('./labels/label_bank.json')` in React Native), `bin` (label_bank.bin), `names`
 * (names.bin) and the optional `commonNames` (common_names.bin) as URLs or bytes. Without
 * `commonNames`, every commonName is null.
 */
export type LabelsSource =
    string |
    {json: string | Bytes | LabelBankJson; bin: string | Bytes; names: string | Bytes; commonNames?: string | Bytes | null};

export interface LoadOptions {
  /**
   * The TF.js graph model: the URL of tfjs/model.json, or any tf.io.IOHandler
   * (tfjs-react-native's bundleResourceIO, tf.io.fromMemory, ...).
   */
  model: string | tf.io.IOHandler;
  labels: LabelsSource;
  /**
   * The export's manifest.json (URL or parsed object). Optional only when `model` is a URL:
   * then it is read from `../manifest.json` next to the tfjs/ folder.
   */
  manifest?: string | ExportManifest;
  /**
   * How an image that is not R x R is squashed to R x R. 'bicubic' (default): the student's
   * training preprocessing, `squashResize` (TF's antialiased bicubic, in tf ops).
   * 'area': bilinear to the nearest integer multiple of R, then a box filter (cheaper, about
   * 2 levels off on textured frames). 'bilinear': one tf.image.resizeBilinear (cheapest,
   * aliases when shrinking a lot). README "Preprocessing" has the measured differences.
   */
  resize?: 'bicubic' | 'area' | 'bilinear';
  /** Skip the warm-up inference inside load (it compiles shaders on WebGL). Default false. */
  skipWarmup?: boolean;
  /**
   * Receives load's warnings; default `console.warn`. Today one: the backend keeps tensors in
   * half-float textures (many phone GPUs under webgl / rn-webgl), so embeddings drift from the
   * float32 model and near-tie answers can change (README "WebGL and half-float textures").
   */
  onWarning?: (message: string) => void;
}

/** Options of every call that takes an image (embed, classify, addTaxon). */
export interface ImageOptions {
  /**
   * Accept a float32 tensor whose values all lie in 0..1 as 0..255 pixels (a very dark image).
   * Without it that is refused (BioClipInputError): it is almost always a photo scaled to 0..1,
   * which the model would see as black. Default false.
   */
  allowUnitRange?: boolean;
}

/**
 * The similarity floors: how similar a photo must be to count as one of the candidates. Below
 * the floor the answer is "none of these" instead of a probability that only compares the
 * candidates with each other (with one user taxon, or a restrictTo of one species, that is
 * always 1). Cosines; -1 turns a floor off.
 */
export const DEFAULT_SPECIES_SIMILARITY_FLOOR = 0.2;
export const DEFAULT_USER_SIMILARITY_FLOOR = 0.6;

export interface ClassifyOptions extends ImageOptions {
  /** How many species, and how many taxa per rank, to return. Default 5. */
  topK?: number;
  /** Which ranks get a top-K list in `ranks`. Default: all seven. */
  ranks?: Rank[];
  /** `best` is the deepest rank whose top probability is >= threshold. Default 0.5. */
  threshold?: number;
  /**
   * Limit the answer to these taxa (a regional checklist or a subtree): names at any rank, as
   * full lineage names ("Animalia Chordata Aves") or short names ("Aves", "Turdus migratorius")
   * when unambiguous. Probabilities are renormalized over the allowed species.
   */
  restrictTo?: string | string[];
  /**
   * A per-species prior (range maps, eBird-style frequencies, what the app knows about where
   * and when the photo was taken): weights >= 0 multiplied into the species probabilities
   * before they are normalized (the same as adding log(weight) to each logit). Either a
   * Float32Array with one weight per species row of the label bank, or a map (Map or plain
   * object) of taxon name -> weight, names at any rank as restrictTo takes them: a species
   * gets the weight of the most specific named taxon above it, and 0 when none is named
   * (so {"Animalia": 0.01, "Turdus merula": 0.3} keeps every animal possible). A weight of 0
   * removes a species. Only the ratios matter. `null` or absent: no prior (switch it off for
   * gardens, zoos and captive animals, where the local checklist does not apply). The
   * similarity floor still compares the photo's cosines, which a prior does not change.
   */
  prior?: Float32Array | Map<string, number> | {[taxon: string]: number} | null;
  /**
   * Photo-to-text cosine (`similarity`: logit / logit_scale) that the best-matching allowed
   * species must reach; below it `abstained` is true and `best` is null. Default
   * DEFAULT_SPECIES_SIMILARITY_FLOOR (0.2); -1 turns it off.
   */
  speciesSimilarityFloor?: number;
  /**
   * Photo-to-prototype cosine (uncentred, `UserTaxonScore.cosine`) that a user taxon must reach
   * to be a candidate; taxa below it get probability 0, and when none reaches it `userBest` is
   * null ("none of these"). Default DEFAULT_USER_SIMILARITY_FLOOR (0.6); -1 turns it off.
   */
  userSimilarityFloor?: number;
}

/** classifyEmbedding takes no image, so no image options. */
export type ClassifyEmbeddingOptions = Omit<ClassifyOptions, keyof ImageOptions>;

/** A taxon with its probability. */
export interface TaxonScore {
  rank: Rank;
  /** Short name: the last word, the last two for species ("Turdus migratorius"). */
  name: string;
  /** Full lineage name, unique within the rank ("Animalia Chordata ... Turdus"). */
  taxon: string;
  /** Row of this taxon in the label bank's table for its rank. */
  index: number;
  commonName: string | null;
  probability: number;
  /** From kingdom down to this taxon itself, short names. */
  lineage: Array<{rank: Rank; name: string}>;
}

/** A user-added taxon (few-shot) scored against the photo. */
export interface UserTaxonScore {
  name: string;
  commonName: string | null;
  /**
   * Cosine between the (centred, renormalized) photo embedding and the (centred) prototype:
   * what tells the user's taxa apart (SimpleShot). Equals `cosine` with one taxon.
   */
  similarity: number;
  /** Plain cosine between the photo's embedding and the taxon's normalized mean: what the floor is compared to. */
  cosine: number;
  /**
   * Softmax of logit_scale * similarity over the user's taxa whose cosine reaches
   * userSimilarityFloor; 0 for the others (so 0 for all when none reaches it).
   */
  probability: number;
}

export interface Classification {
  /** Top-K species, most probable first. */
  species: TaxonScore[];
  /** Top-K taxa per requested rank; a higher taxon's probability is its species' sum. */
  ranks: Partial<Record<Rank, TaxonScore[]>>;
  /**
   * The deepest rank whose top taxon clears `threshold`: "genus Turdus, 0.93" when the
   * species is uncertain. Null when not even the top kingdom clears it.
   */
  best: TaxonScore | null;
  /**
   * Cosine between the photo and its best-matching (allowed) species' text embedding, i.e. that
   * species' logit / logit_scale.
   */
  similarity: number;
  /**
   * True when `similarity` is below speciesSimilarityFloor: the photo matches none of the
   * (allowed) species well, and `best` is null whatever the probabilities say.
   */
  abstained: boolean;
  /** The user's few-shot taxa, best first (empty when none were added). */
  userTaxa: UserTaxonScore[];
  /** The most probable user taxon that reaches userSimilarityFloor; null: none of these (or none added). */
  userBest: UserTaxonScore | null;
  /** The photo's L2-normalized embedding, float32 [D]. */
  embedding: Float32Array;
}

/** Few-shot prototypes as JSON (exportPrototypes / importPrototypes). */
export interface PrototypesJson {
  format: 'react-bio-clip/prototypes';
  format_version: 1;
  embed_dim: number;
  /** sha256 of the model weights (from the manifest) the embeddings came from, if known. */
  model_sha256: string | null;
  taxa: Array<{
    name: string;
    common_name: string;
    /** How many photos went into the mean. */
    count: number;
    /** Mean of the photos' L2-normalized embeddings (not yet centred), [embed_dim]. */
    mean_embedding: number[];
  }>;
}

export interface AddTaxonOptions extends ImageOptions {
  commonName?: string;
}

/** A loaded model + label bank. Create with load(); call dispose() when done. */
export interface BioClip {
  readonly embedDim: number;
  /** Model input resolution R. */
  readonly resolution: number;
  readonly manifest: ExportManifest;
  readonly numSpecies: number;
  /**
   * The float precision the backend stored tensors in, measured at load ('float16' under WebGL
   * without float32 render targets; load then warned through `onWarning`).
   */
  readonly precision: 'float32' | 'float16';
  /** The photo's L2-normalized embedding, float32 [D]. Synchronous (reads back from the GPU). */
  embed(image: ImageInput, options?: ImageOptions): Float32Array;
  /** Zero-shot hierarchical answer for one photo or camera frame. */
  classify(image: ImageInput, options?: ClassifyOptions): Promise<Classification>;
  /** The same answer for an embedding computed earlier (float32 [D], L2-normalized). */
  classifyEmbedding(embedding: Float32Array, options?: ClassifyEmbeddingOptions): Promise<Classification>;
  /** Few-shot: adds photos of a taxon the label bank lacks (or adds to it). */
  addTaxon(name: string, images: ImageInput[], options?: AddTaxonOptions): Promise<void>;
  removeTaxon(name: string): boolean;
  readonly userTaxa: string[];
  exportPrototypes(): PrototypesJson;
  /** Adds (or with replace, replaces all) prototypes; refuses another model's. */
  importPrototypes(json: PrototypesJson | string, options?: {replace?: boolean}): void;
  /** Frees the model weights and the label bank tensors. */
  dispose(): void;
}
