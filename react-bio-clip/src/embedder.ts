/**
 * The seam between a BioClip and whatever runs the image model. BioClipModel owns preprocessing
 * (squashResize to R x R) and everything after the embedding (label bank scoring, hierarchy,
 * `best`, `restrictTo`, few-shot); an Embedder only turns resized photos into embeddings.
 * The TF.js graph model is one embedder (GraphModelEmbedder, below); the TFLite model of
 * `react-bio-clip/tflite` is another.
 */
import * as tf from '@tensorflow/tfjs';

import {BioClipMismatchError} from './errors';
import {safeL2Normalize} from './precision';

export interface Embedder {
  /**
   * float32 [N, R, R, 3] RGB 0..255, already squashed to R x R -> float32 [N, D], unit rows.
   * Synchronous: it is called inside tf.tidy (the tensors it makes are freed by the caller).
   */
  embed(input: tf.Tensor4D): tf.Tensor2D;
  dispose(): void;
}

/** The TF.js graph model of the export (tfjs/model.json) as an Embedder. */
export class GraphModelEmbedder implements Embedder {
  /**
   * Set by load() on half-float backends: the graph node the output L2-normalizes. The model is
   * then run up to it and normalized by safeL2Normalize (the graph's own sum of squares
   * overflows float16 for a long pre-normalization embedding).
   */
  preNormalization: string | null = null;

  constructor(readonly model: tf.GraphModel) {}

  embed(input: tf.Tensor4D): tf.Tensor2D {
    if (this.preNormalization) {
      return safeL2Normalize(this.model.execute(input, this.preNormalization) as tf.Tensor2D);
    }
    const out = this.model.predict(input);
    if (!(out instanceof tf.Tensor)) {
      throw new BioClipMismatchError('the model has several outputs; a BioCLIP Lite export has one (the embedding)');
    }
    return out as tf.Tensor2D;
  }

  dispose(): void {
    this.model.dispose();
  }
}
