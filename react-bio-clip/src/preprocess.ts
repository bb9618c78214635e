/**
 * Image -> model input, in tf ops so it runs on the GPU when there is one.
 *
 * The teacher (BioCLIP) squashes the whole photo to 224 x 224 with PIL bicubic, which is
 * antialiased: when shrinking, its kernel widens with the scale factor. TF.js has neither
 * bicubic nor antialias. The closest cheap equivalent in TF.js ops ('area', the default):
 * bilinear to the largest integer multiple k*R <= the photo size (a shrink of less than 2x, so
 * bilinear barely aliases), then a k x k box filter (avgPool) down to R. Geometry stays exact
 * (whole photo, half-pixel centres, as PIL). Measured against PIL bicubic on the fixture photo
 * (448 x 600 -> 224): see README "Preprocessing".
 */
import * as tf from '@tensorflow/tfjs';

import {BioClipInputError} from './errors';
import {ImageInput, PixelData} from './types';

export type ResizeMethod = 'area' | 'bilinear';

function isTensor(image: unknown): image is tf.Tensor {
  return image instanceof tf.Tensor;
}

/** Checks an ImageInput without touching its values. Throws BioClipInputError. */
export function checkImage(image: ImageInput, where: string): void {
  if (isTensor(image)) {
    if (image.isDisposed) throw new BioClipInputError(`${where}: the image tensor was already disposed`);
    if (image.rank !== 3 || (image.shape[2] !== 3 && image.shape[2] !== 4)) {
      throw new BioClipInputError(
          `${where}: a tensor image must be [height, width, 3|4] but has shape [${image.shape}]`);
    }
    if (image.dtype !== 'int32' && image.dtype !== 'float32') {
      throw new BioClipInputError(
          `${where}: a tensor image must be int32 or float32 (values 0..255) but is ${image.dtype}`);
    }
    if (image.shape[0] < 1 || image.shape[1] < 1) {
      throw new BioClipInputError(`${where}: the image is empty, shape [${image.shape}]`);
    }
    return;
  }
  const pixels = image as PixelData;
  if (!pixels || typeof pixels !== 'object' || !('data' in pixels)) {
    throw new BioClipInputError(
        `${where}: expected a tf.Tensor3D or {data, width, height}, got ${describe(image)}`);
  }
  if (!(pixels.data instanceof Uint8Array || pixels.data instanceof Uint8ClampedArray)) {
    throw new BioClipInputError(
        `${where}: pixel data must be a Uint8Array or Uint8ClampedArray, got ${describe(pixels.data)}`);
  }
  const {width, height} = pixels;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new BioClipInputError(`${where}: width and height must be positive integers, got ${width} x ${height}`);
  }
  const n = pixels.data.length;
  if (n !== width * height * 3 && n !== width * height * 4) {
    throw new BioClipInputError(
        `${where}: ${n} bytes of pixel data do not make a ${width} x ${height} RGB ` +
        `(${width * height * 3}) or RGBA (${width * height * 4}) image`);
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value !== 'object') return typeof value;
  return (value as object).constructor?.name ?? 'object';
}

/**
 * ImageInput -> float32 [H, W, C], values 0..255: C = 3, or 4 for an RGBA tensor, whose alpha
 * is dropped after the squash (resize and box filter work per channel, so that gives the same
 * pixels, while slicing a full-size [H, W, 4] tensor is the slowest op of the whole path: seconds
 * at 12 MP on the cpu and wasm backends). Pixel bytes are widened (and RGBA stripped) in one
 * pass of plain JS, straight to float32. Call inside tf.tidy.
 */
function toFloatPixels(image: ImageInput): tf.Tensor3D {
  if (isTensor(image)) return image.dtype === 'float32' ? image : tf.cast(image, 'float32');
  const {data, width, height} = image;
  const rgb = floatBuffer(width * height * 3);
  if (data.length === rgb.length) {
    rgb.set(data);
    return tf.tensor3d(rgb, [height, width, 3], 'float32');
  }
  for (let i = 0, j = 0; j < rgb.length; i += 4, j += 3) {
    rgb[j] = data[i];
    rgb[j + 1] = data[i + 1];
    rgb[j + 2] = data[i + 2];
  }
  return tf.tensor3d(rgb, [height, width, 3], 'float32');
}

/**
 * A Float32Array of n values for pixels about to become a tensor. The wasm backend copies a new
 * tensor's values into its own heap at once, so there one buffer serves call after call: at
 * 12 MP, the first touch of a fresh 144 MB buffer costs more than filling it. It is dropped
 * after a few idle seconds. Other backends (cpu, WebGL) may keep the array itself as the
 * tensor's storage, so they get a fresh one each time.
 */
let scratch: Float32Array | null = null;
let scratchTimer: ReturnType<typeof setTimeout> | null = null;
const SCRATCH_IDLE_MS = 3000;
function floatBuffer(n: number): Float32Array {
  if (tf.getBackend() !== 'wasm') return new Float32Array(n);
  if (!scratch || scratch.length < n) scratch = new Float32Array(n);
  if (scratchTimer !== null) clearTimeout(scratchTimer);
  scratchTimer = setTimeout(() => {
    scratch = null;
    scratchTimer = null;
  }, SCRATCH_IDLE_MS);
  // Node: the timer must not keep a script alive.
  (scratchTimer as {unref?: () => void}).unref?.();
  return scratch.subarray(0, n);
}

function dropAlpha(image: tf.Tensor3D): tf.Tensor3D {
  return image.shape[2] === 4 ? tf.slice(image, [0, 0, 0], [-1, -1, 3]) : image;
}

/** ImageInput -> float32 [H, W, 3], values 0..255, at full size. Call inside tf.tidy. */
export function toRgbFloat(image: ImageInput): tf.Tensor3D {
  return dropAlpha(toFloatPixels(image));
}

/** float32 [H, W, C] -> float32 [R, R, C], the whole photo squashed (no crop), channels apart. In tf.tidy. */
export function squash(rgb: tf.Tensor3D, resolution: number, method: ResizeMethod): tf.Tensor3D {
  const [height, width] = rgb.shape;
  if (height === resolution && width === resolution) return rgb;
  if (method === 'bilinear') {
    return tf.image.resizeBilinear(rgb, [resolution, resolution], false, true);
  }
  const fy = Math.max(1, Math.floor(height / resolution));
  const fx = Math.max(1, Math.floor(width / resolution));
  let out = rgb;
  if (height !== fy * resolution || width !== fx * resolution) {
    out = tf.image.resizeBilinear(out, [fy * resolution, fx * resolution], false, true);
  }
  if (fy > 1 || fx > 1) out = tf.avgPool(out, [fy, fx], [fy, fx], 'valid');
  return out;
}

/** ImageInput -> float32 [1, R, R, 3], 0..255, the model's input. Call inside tf.tidy. */
export function toModelInput(image: ImageInput, resolution: number, method: ResizeMethod): tf.Tensor4D {
  return tf.expandDims(dropAlpha(squash(toFloatPixels(image), resolution, method)), 0);
}

/**
 * For a float32 tensor image, what checkInputValues needs, as float32 [3]: the number of NaN or
 * infinite values, the minimum and the maximum of the model input made from it (its squash:
 * the values the model would see, and few of them, so this costs little at any photo size).
 * Null for other inputs: int32 tensors and pixel bytes cannot hold NaN or fractions. In tf.tidy.
 */
export function inputValueStats(image: ImageInput, modelInput: tf.Tensor4D): tf.Tensor1D | null {
  if (!isTensor(image) || image.dtype !== 'float32') return null;
  const nonFinite = tf.sum(tf.cast(tf.logicalNot(tf.isFinite(modelInput)), 'float32'));
  return tf.stack([nonFinite, tf.min(modelInput), tf.max(modelInput)]) as tf.Tensor1D;
}

/** Refuses a float32 image with NaN/Infinity, or scaled to 0..1, from inputValueStats' values. */
export function checkInputValues(stats: ArrayLike<number>, where: string, allowUnitRange: boolean): void {
  const [nonFinite, min, max] = [stats[0], stats[1], stats[2]];
  if (nonFinite > 0) {
    throw new BioClipInputError(
        `${where}: the float32 image holds NaN or Infinity values (${nonFinite} of the model input's values are not finite)`);
  }
  // All zeros is a black frame either way; any other image within 0..1 is almost surely scaled.
  if (!allowUnitRange && min >= 0 && max <= 1 && max > 0) {
    throw new BioClipInputError(
        `${where}: every value of the float32 image lies in 0..1 (largest ${max}), but pixels must be 0..255: ` +
        'multiply by 255 (the normalization is inside the model). If this really is a very dark 0..255 image, ' +
        'pass {allowUnitRange: true}');
  }
}

/**
 * The one function that turns a camera frame or photo into the model's R x R input: float32
 * [R, R, 3], 0..255, a new tensor the caller disposes. `image` is an int32/float32 Tensor3D
 * [H, W, 3|4] (never disposed here) or {data, width, height}.
 *
 * NOTE: a stand-in with the final signature, so that <BioClipCamera> can call the core's
 * exported preprocessing already; the antialiased bicubic squash that reproduces the training
 * preprocessing (issue 14, item 4) replaces the body. It delegates to `squash` ('area').
 */
export function squashResize(image: ImageInput, resolution: number): tf.Tensor3D {
  checkImage(image, 'squashResize');
  if (!Number.isInteger(resolution) || resolution < 1) {
    throw new BioClipInputError(`squashResize: resolution must be a positive integer, got ${resolution}`);
  }
  return tf.tidy(() => {
    const out = squash(toRgbFloat(image), resolution, 'area');
    return out === image ? tf.clone(out) : out;
  });
}
