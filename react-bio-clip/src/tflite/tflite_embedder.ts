/**
 * The exported TFLite int8 model (EXPORT/tflite/model_int8.tflite, docs/FORMATS.md section 4) as
 * an Embedder: float32 [1, R, R, 3] RGB 0..255 in, float32 [1, D] unit rows out. The photo is
 * squashed by the package (squashResize) exactly as for TF.js; only the network runs in TFLite.
 */
import * as tf from '@tensorflow/tfjs';

import {Embedder} from '../embedder';
import {BioClipMismatchError} from '../errors';
import {TensorflowModel, TfliteTensorInfo} from './fast_tflite';

function describe(t: TfliteTensorInfo | undefined): string {
  return t ? `${t.dataType} [${t.shape}]` : 'none';
}

export class TfliteEmbedder implements Embedder {
  private readonly pixels: number;

  /** Checks the model's input and output against the manifest's resolution and embed_dim. */
  constructor(private readonly model: TensorflowModel, readonly resolution: number, readonly embedDim: number) {
    const input = model.inputs?.[0];
    const output = model.outputs?.[0];
    const r = resolution;
    const inputOk = model.inputs?.length === 1 && input?.dataType === 'float32' && input.shape.length === 4 &&
        input.shape[0] === 1 && input.shape[1] === r && input.shape[2] === r && input.shape[3] === 3;
    if (!inputOk) {
      throw new BioClipMismatchError(
          `the TFLite model's input is ${describe(input)}${(model.inputs?.length ?? 0) > 1 ? ` (of ${model.inputs.length} inputs)` : ''} ` +
          `but the manifest says float32 [1, ${r}, ${r}, 3] (RGB 0..255, one photo); is this the export's tflite/model_int8.tflite?`);
    }
    const outputOk = model.outputs?.length === 1 && output?.dataType === 'float32' &&
        output.shape.length === 2 && output.shape[0] === 1 && output.shape[1] === embedDim;
    if (!outputOk) {
      throw new BioClipMismatchError(
          `the TFLite model's output is ${describe(output)} but the manifest says float32 [1, ${embedDim}] (the embedding)`);
    }
    this.pixels = r * r * 3;
  }

  /** One runSync per photo (the model has batch 1). Synchronous, as BioClip's embed() is. */
  embed(input: tf.Tensor4D): tf.Tensor2D {
    const [n, h, w, c] = input.shape;
    if (h * w * c !== this.pixels) {
      throw new BioClipMismatchError(`TFLite embedder: got a [${input.shape}] input, the model takes [1, ${this.resolution}, ${this.resolution}, 3]`);
    }
    const data = input.dataSync() as Float32Array;
    const rows = new Float32Array(n * this.embedDim);
    for (let i = 0; i < n; ++i) {
      // A copy of exactly one photo: the native side reads the whole ArrayBuffer.
      const photo = data.slice(i * this.pixels, (i + 1) * this.pixels);
      const outputs = this.model.runSync([photo.buffer]);
      const out = outputs?.[0];
      if (!out || out.byteLength < this.embedDim * 4) {
        throw new BioClipMismatchError(
            `the TFLite model returned ${out ? `${out.byteLength} bytes` : 'no output'}; expected ${this.embedDim} float32`);
      }
      rows.set(new Float32Array(out, 0, this.embedDim), i * this.embedDim);
    }
    return tf.tensor2d(rows, [n, this.embedDim]);
  }

  dispose(): void {
    this.model.dispose?.();
  }
}
