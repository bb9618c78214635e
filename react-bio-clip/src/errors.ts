/**
 * Typed errors. Every error this package throws on purpose is a BioClipError, and its class
 * (and `code`) says which kind of thing was wrong, so callers can react without parsing text.
 */

export type BioClipErrorCode = 'BAD_INPUT' | 'MISMATCH' | 'BAD_FORMAT' | 'LOAD_FAILED' | 'DISPOSED';

export class BioClipError extends Error {
  readonly code: BioClipErrorCode;
  constructor(code: BioClipErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
    // Keeps instanceof working when a consumer transpiles this class down to ES5.
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** The image (or option) handed to embed/classify/addTaxon has the wrong shape, dtype or type. */
export class BioClipInputError extends BioClipError {
  constructor(message: string) {
    super('BAD_INPUT', message);
  }
}

/**
 * The model, label bank, manifest or prototypes do not belong together: a different embedding
 * width, resolution, species count or file hash than the export manifest records.
 */
export class BioClipMismatchError extends BioClipError {
  constructor(message: string) {
    super('MISMATCH', message);
  }
}

/** A file is readable but is not what its format (docs/FORMATS.md section 4) says it must be. */
export class BioClipFormatError extends BioClipError {
  constructor(message: string) {
    super('BAD_FORMAT', message);
  }
}

/** A file (model.json, a weight shard, the label bank) could not be fetched or read. */
export class BioClipLoadError extends BioClipError {
  readonly cause?: unknown;
  constructor(message: string, cause?: unknown) {
    super('LOAD_FAILED', message);
    this.cause = cause;
  }
}

/** The BioClip was used after dispose(). */
export class BioClipDisposedError extends BioClipError {
  constructor() {
    super('DISPOSED', 'this BioClip was disposed; load() a new one');
  }
}
