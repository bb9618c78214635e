/**
 * Image -> model input, in tf ops so it runs on the GPU (webgl, rn-webgl) as well as cpu/wasm.
 *
 * The student was trained on `bioclip_lite_tf.model.layers.squash_resize`: the whole photo squashed
 * (no crop) to R x R with `tf.image.resize(..., 'bicubic', antialias=True)`, clipped to 0..255,
 * kept as float. `squashResize` (resize method 'bicubic', the default) reproduces that: TF's
 * antialiased resize is `scale_and_translate` with the Keys cubic kernel (a = -0.5), widened by
 * the shrink factor, sampled at half-pixel centres, its taps clamped to the image and
 * renormalised. Separable, so it is two matrix products with precomputed weight matrices; for
 * a large shrink the matrices are split into bands (blocks of output rows that read only a
 * window of input rows), which keeps a 12 MP frame at a few hundred MFLOP instead of ~8 GFLOP.
 *
 * 'area' and 'bilinear' are the earlier, cheaper approximations, kept for comparison
 * (README "Preprocessing" gives the measured differences of all three).
 */
import * as tf from '@tensorflow/tfjs';

import {BioClipInputError} from './errors';
import {ImageInput, PixelData} from './types';

export type ResizeMethod = 'bicubic' | 'area' | 'bilinear';
export const RESIZE_METHODS: readonly ResizeMethod[] = ['bicubic', 'area', 'bilinear'];

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
  if (method === 'bicubic') return cubicSquash(rgb, resolution);
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

/**
 * The student's training preprocessing, for camera frames and photos alike: squashes the whole
 * image (no crop, aspect ratio ignored) to `resolution` x `resolution` exactly as
 * `bioclip_lite_tf.model.layers.squash_resize` does in Python (tf.image.resize bicubic with
 * antialias=True, then clipped to 0..255). Runs in tf ops (two banded matrix products), so on
 * the GPU with the webgl / rn-webgl backends and on cpu / wasm alike.
 *
 * @param image int32 or float32 tf.Tensor3D [H, W, 3] or [H, W, 4] (alpha dropped), values
 *     0..255, any H and W (a camera frame, `tf.browser.fromPixels`, a decoded photo); or
 *     `{data, width, height}` RGB/RGBA bytes. Never disposed here.
 * @param resolution the model's input side R (`bioClip.resolution`).
 * @returns a new float32 tf.Tensor3D [R, R, 3], values 0..255 (not rounded: training does not
 *     round either). The caller disposes it. An R x R image comes back unchanged (as float32).
 * @throws BioClipInputError for a bad image or resolution.
 */
export function squashResize(image: ImageInput, resolution: number): tf.Tensor3D {
  checkImage(image, 'squashResize');
  if (!Number.isInteger(resolution) || resolution < 1) {
    throw new BioClipInputError(`squashResize: resolution must be a positive integer, got ${resolution}`);
  }
  return tf.tidy(() => cubicSquash(image, resolution));
}

/** Keys' cubic convolution kernel with a = -0.5 (the one TF's 'keyscubic' and PIL use). */
function keysCubic(x: number): number {
  x = Math.abs(x);
  if (x >= 2) return 0;
  if (x >= 1) return ((-0.5 * x + 2.5) * x - 4) * x + 2;
  return (1.5 * x - 2.5) * x * x + 1;
}

/** Output rows [outStart, outStart + weights.length / inLength) read input rows [inStart, + inLength). */
interface Band {
  outStart: number;
  outLength: number;
  inStart: number;
  inLength: number;
  /** float32 [outLength, inLength], row-major. */
  weights: Float32Array;
}

/**
 * Resampling weights along one axis, inSize -> outSize, as TF's ScaleAndTranslate computes them
 * (scale = out / in, no translation, antialias): output x samples the input at
 * (x + 0.5) / scale; the kernel is stretched by kernelScale = max(1 / scale, 1) (so when
 * shrinking it low-passes as well as interpolates); taps j in [ceil(s - 2 k - 0.5),
 * floor(s + 2 k - 0.5)] clamped to the image, weight keysCubic((j + 0.5 - s) / k), normalised
 * to sum 1. Returns per output: first tap and its weights.
 */
function axisTaps(inSize: number, outSize: number): {starts: Int32Array; taps: Float64Array[]} {
  const f = Math.fround;
  const invScale = f(1 / f(outSize / inSize));
  const kernelScale = Math.max(invScale, 1);
  const radius = 2 * kernelScale;
  const starts = new Int32Array(outSize);
  const taps: Float64Array[] = [];
  for (let x = 0; x < outSize; ++x) {
    const sample = f((x + 0.5) * invScale);
    const start = Math.min(Math.max(Math.ceil(sample - radius - 0.5), 0), inSize - 1);
    const end = Math.min(Math.max(Math.floor(sample + radius - 0.5), 0), inSize - 1) + 1;
    const w = new Float64Array(end - start);
    let sum = 0;
    for (let j = start; j < end; ++j) {
      w[j - start] = keysCubic((j + 0.5 - sample) / kernelScale);
      sum += w[j - start];
    }
    if (Math.abs(sum) > 0) for (let i = 0; i < w.length; ++i) w[i] /= sum;
    starts[x] = start;
    taps.push(w);
  }
  return {starts, taps};
}

/**
 * The taps as dense bands. A mild resize (or an enlargement) is one dense [out, in] matrix. A
 * shrink by more than 2x is split into bands of B output rows, B chosen so that a band's input
 * window is about three times the kernel's footprint (fewer, larger products ran faster on
 * wasm than the minimal-work choice); all bands have the same window length (windows
 * at the image's end are shifted inwards, their extra weights zero), so on WebGL every band
 * reuses the same compiled shaders.
 */
function axisBands(inSize: number, outSize: number): Band[] {
  const {starts, taps} = axisTaps(inSize, outSize);
  let bandRows = outSize;
  if (inSize > 2 * outSize) {
    const footprint = Math.max(...taps.map((t) => t.length));
    bandRows = Math.max(1, Math.min(outSize, Math.round(2 * footprint * outSize / inSize)));
  }
  const groups: Array<[number, number]> = [];
  for (let o = 0; o < outSize; o += bandRows) groups.push([o, Math.min(outSize, o + bandRows)]);
  let window = 0;
  for (const [a, b] of groups) {
    const lo = starts[a];
    let hi = lo;
    for (let x = a; x < b; ++x) hi = Math.max(hi, starts[x] + taps[x].length);
    window = Math.max(window, hi - lo);
  }
  return groups.map(([a, b]) => {
    const inStart = Math.max(0, Math.min(starts[a], inSize - window));
    const weights = new Float32Array((b - a) * window);
    for (let x = a; x < b; ++x) {
      const row = (x - a) * window;
      taps[x].forEach((w, i) => { weights[row + starts[x] - inStart + i] = w; });
    }
    return {outStart: a, outLength: b - a, inStart, inLength: window, weights};
  });
}

const bandCache = new Map<string, Band[]>();
const BAND_CACHE_SIZE = 8;

function cachedBands(inSize: number, outSize: number): Band[] {
  const key = `${inSize}>${outSize}`;
  let bands = bandCache.get(key);
  if (bands) {
    bandCache.delete(key);
  } else {
    bands = axisBands(inSize, outSize);
    if (bandCache.size >= BAND_CACHE_SIZE) bandCache.delete(bandCache.keys().next().value as string);
  }
  bandCache.set(key, bands);  // most recently used last
  return bands;
}

const DROP_ALPHA = new Float32Array([1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]);

/** Backends whose tensors live in JS / wasm memory, where reading a frame back costs a copy at most. */
const HOST_MEMORY_BACKENDS = new Set(['cpu', 'wasm']);

/**
 * An image seen as float32 rows [H, W*C] (C = 3 or 4), from which bands of rows are taken.
 * On GPU backends a band is a tf.slice (a shader). On cpu / wasm, tf.slice of a large 2-D tensor
 * is slow on wasm (measured 160 ms per 145 x 12k band) and the pixels already sit in host
 * memory, so the values are read once and each band is a tensor made from a subarray.
 */
interface RowSource {
  rows: number;
  cols: number;
  all(): tf.Tensor2D;
  band(start: number, length: number): tf.Tensor2D;
}

function deviceRows(x: tf.Tensor2D): RowSource {
  const [rows, cols] = x.shape;
  return {rows, cols, all: () => x, band: (start, length) => tf.slice2d(x, [start, 0], [length, cols])};
}

function hostRows(values: Float32Array | Int32Array | Uint8Array | Uint8ClampedArray, rows: number, cols: number): RowSource {
  const band = (start: number, length: number) => {
    const view = values.subarray(start * cols, (start + length) * cols);
    return tf.tensor2d(view instanceof Float32Array ? view : new Float32Array(view), [length, cols], 'float32');
  };
  return {rows, cols, all: () => band(0, rows), band};
}

function tensorRows(x: tf.Tensor2D): RowSource {
  if (!HOST_MEMORY_BACKENDS.has(tf.getBackend())) return deviceRows(x);
  return hostRows(x.dataSync() as Float32Array, x.shape[0], x.shape[1]);
}

function imageRows(image: ImageInput): RowSource {
  if (image instanceof tf.Tensor) {
    const [rows, width, channels] = image.shape as [number, number, number];
    if (!HOST_MEMORY_BACKENDS.has(tf.getBackend())) {
      return deviceRows(tf.reshape(tf.cast(image, 'float32'), [rows, width * channels]) as tf.Tensor2D);
    }
    return hostRows(image.dataSync() as Float32Array | Int32Array, rows, width * channels);
  }
  const channels = image.data.length / (image.width * image.height);
  return hostRows(image.data, image.height, image.width * channels);
}

/** Rows [in, C] -> float32 [out, C]: the axis-0 resample as banded matMuls. In tf.tidy. */
function resampleRows(source: RowSource, outSize: number): tf.Tensor2D {
  const bands = cachedBands(source.rows, outSize);
  const parts = bands.map((band): tf.Tensor2D => {
    const w = tf.tensor2d(band.weights, [band.outLength, band.inLength], 'float32');
    const rows = band.inLength === source.rows ? source.all() : source.band(band.inStart, band.inLength);
    return tf.matMul(w, rows);
  });
  return parts.length === 1 ? parts[0] : tf.concat2d(parts, 0);
}

/**
 * ImageInput (any size, 3 or 4 channels, int32 / float32 / bytes) -> float32 [R, R, 3]:
 * tf.image.resize bicubic antialias, then clip to 0..255. In tf.tidy.
 */
function cubicSquash(image: ImageInput, resolution: number): tf.Tensor3D {
  const [width, channels] = image instanceof tf.Tensor ?
      [image.shape[1] as number, image.shape[2] as number] :
      [image.width, image.data.length / (image.width * image.height)];
  const source = imageRows(image);
  // Height first: that product reads the big image as it lies ([H, W*C]); the alpha channel
  // rides along (cheaper than slicing it off the full frame) and is dropped once shrunk. Only
  // the already shrunken [R, W, C] is transposed for the width pass.
  const tall = source.rows === resolution ? source.all() : resampleRows(source, resolution);
  let out = tf.reshape(tall, [resolution, width, channels]) as tf.Tensor3D;
  if (width !== resolution) {
    const columns = tf.reshape(tf.transpose(out, [1, 0, 2]), [width, resolution * channels]) as tf.Tensor2D;
    out = tf.transpose(tf.reshape(resampleRows(tensorRows(columns), resolution), [resolution, resolution, channels]), [1, 0, 2]);
  }
  if (channels === 4) {
    // Drop alpha with a 0/1 matMul (exact for finite values): a strided slice is far slower on
    // the cpu and wasm backends.
    out = tf.reshape(tf.matMul(tf.reshape(out, [resolution * resolution, 4]), tf.tensor2d(DROP_ALPHA, [4, 3])),
                     [resolution, resolution, 3]);
  }
  // Cubic weights are negative at the tails, so sharp edges overshoot 0..255; training clips.
  // Non-finite values pass unclipped (wasm's clip turns NaN into a number), so the input check
  // still sees a NaN or Infinity of the photo.
  const clipped = tf.clipByValue(out, 0, 255);
  return tf.where(tf.isFinite(out), clipped, out);
}

/** ImageInput -> float32 [1, R, R, 3], 0..255, the model's input. Call inside tf.tidy. */
export function toModelInput(image: ImageInput, resolution: number, method: ResizeMethod): tf.Tensor4D {
  // Bicubic (the training resize) reads the raw image, bytes or tensor, RGBA included, without
  // a full-size float copy; the other methods squash the float pixels.
  if (method === 'bicubic') return tf.expandDims(cubicSquash(image, resolution), 0);
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
