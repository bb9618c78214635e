export {load, backendName} from './load';
export {
  BioClipError, BioClipInputError, BioClipMismatchError, BioClipFormatError, BioClipLoadError,
  BioClipDisposedError,
} from './errors';
export type {BioClipErrorCode} from './errors';
export {DEFAULT_SPECIES_SIMILARITY_FLOOR, DEFAULT_USER_SIMILARITY_FLOOR, RANKS} from './types';
export type {
  AddTaxonOptions, BioClip, Bytes, Classification, ClassifyEmbeddingOptions, ClassifyOptions, ExportManifest, ImageInput,
  ImageOptions,
  LabelBankJson, LabelsSource, LoadOptions, PixelData, PrototypesJson, Rank, RankTable, TaxonScore,
  UserTaxonScore,
} from './types';
export {squashResize} from './preprocess';
export {measureFloatPrecision} from './precision';
export type {FloatPrecision} from './precision';
export type {ResizeMethod} from './preprocess';
export {version} from './version';
