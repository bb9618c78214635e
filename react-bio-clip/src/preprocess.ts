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

/** ImageInput -> float32 [H, W, 3], values 0..255. Call inside tf.tidy. */
export function toRgbFloat(image: ImageInput): tf.Tensor3D {
  let rgb: tf.Tensor3D;
  if (isTensor(image)) {
    rgb = image;
  } else {
    const channels = image.data.length / (image.width * image.height);
    // int32 keeps the upload exact; the cast to float32 happens on the backend.
    rgb = tf.tensor3d(Int32Array.from(image.data), [image.height, image.width, channels], 'int32');
  }
  if (rgb.shape[2] === 4) rgb = tf.slice(rgb, [0, 0, 0], [-1, -1, 3]);
  return tf.cast(rgb, 'float32');
}

/** float32 [H, W, 3] -> float32 [R, R, 3], the whole photo squashed (no crop). In tf.tidy. */
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
  return tf.expandDims(squash(toRgbFloat(image), resolution, method), 0);
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
