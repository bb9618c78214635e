#!/usr/bin/env node
'use strict';
/**
 * What a 12 MP RGBA photo costs against an int32 tensor of the same pixels, per TF.js backend:
 * embed() end to end (pixels to model input, model, read back), all in one run so the ratio
 * compares numbers taken under the same conditions.
 *
 *   node bench/rgba_input.js [--export_dir=test/fixtures/export] [--out=../bench/results/tfjs_rgba_input.json]
 *       [--backends=wasm,cpu] [--width=4000] [--height=3000] [--runs=5] [--previous_path_backends=wasm]
 *
 * Inputs, same pixels each time (a texture, alpha random):
 *   int32_rgb_tensor   tf.Tensor3D int32 [H, W, 3], made before timing (the reference)
 *   rgba_pixels        {data: Uint8ClampedArray RGBA, width, height} (a canvas ImageData)
 *   rgb_pixels         {data: Uint8Array RGB, width, height} (jpeg-js, formatAsRGBA: false)
 *   int32_rgba_tensor  tf.Tensor3D int32 [H, W, 4], made before timing
 *   previous_rgba_path the path react-bio-clip 0.1.0 took for rgba_pixels (Int32Array.from, an
 *                      int32 [H, W, 4] tensor, alpha sliced off at full size, cast, squash), for
 *                      the before/after; slow, so timed once and only on --previous_path_backends
 * The default export is the test fixture (R = 224, a tiny model), so the numbers are mostly the
 * input path's: the worst case for the ratio. A benchmark, not a test: nothing is asserted.
 */
const fs = require('fs');
const os = require('os');
const path = require('path');

const {parseFlags, runMain, writeResult} = require('./flags');

const FLAGS = {
  export_dir: {help: 'Export directory.', value: path.join(__dirname, '..', 'test', 'fixtures', 'export')},
  out: {help: 'JSON file to write.', value: path.join(__dirname, '..', '..', 'bench', 'results', 'tfjs_rgba_input.json')},
  backends: {help: 'Comma list of TF.js backends: wasm, cpu.', value: 'wasm,cpu'},
  width: {help: 'Photo width.', value: '4000'},
  height: {help: 'Photo height.', value: '3000'},
  runs: {help: 'Timed embed calls per backend and input (after one untimed).', value: '5'},
  previous_path_backends: {help: 'Backends on which to time the 0.1.0 RGBA path once (it takes seconds).', value: 'wasm'},
};

parseFlags(FLAGS, 'node bench/rgba_input.js [flags]');
const usage = FLAGS.usage;
const exportDir = FLAGS.export_dir.value;
if (!fs.existsSync(path.join(exportDir, 'manifest.json'))) usage(`${exportDir}/manifest.json does not exist`);
const [width, height, runs] = ['width', 'height', 'runs'].map((k) => Number(FLAGS[k].value));
if (![width, height, runs].every((n) => Number.isInteger(n) && n > 0)) usage('--width, --height and --runs must be positive integers');
const backends = FLAGS.backends.value.split(',').filter(Boolean);
const previousPathBackends = FLAGS.previous_path_backends.value.split(',').filter(Boolean);
for (const b of [...backends, ...previousPathBackends]) if (!['cpu', 'wasm'].includes(b)) usage(`unknown backend ${b}`);

const tf = require('@tensorflow/tfjs');
const {loadFromDirectory} = require('react-bio-clip/node');
const {version} = require('react-bio-clip');
const {squash} = require('../dist/preprocess');

function stats(times) {
  const sorted = [...times].sort((a, b) => a - b);
  return {n: times.length, median: sorted[Math.floor(sorted.length / 2)], min: sorted[0], max: sorted[sorted.length - 1]};
}

function time(fn) {
  const start = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** RGB and RGBA bytes of one textured photo. */
function photo() {
  const rgb = new Uint8Array(width * height * 3);
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let p = 0, y = 0; y < height; ++y) {
    for (let x = 0; x < width; ++x, ++p) {
      const r = (x * 7 + y * 3) & 255, g = (128 + 100 * Math.sin(x / 17) * Math.cos(y / 23)) & 255, b = (x ^ y) & 255;
      rgb[3 * p] = r; rgb[3 * p + 1] = g; rgb[3 * p + 2] = b;
      rgba[4 * p] = r; rgba[4 * p + 1] = g; rgba[4 * p + 2] = b; rgba[4 * p + 3] = (p * 31) & 255;
    }
  }
  return {rgb, rgba};
}

async function benchBackend(backend, pixels) {
  if (backend === 'wasm') require('@tensorflow/tfjs-backend-wasm');
  if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} did not initialise`);
  await tf.ready();
  const bioClip = await loadFromDirectory(exportDir);
  const rgbTensor = tf.tensor3d(pixels.rgb, [height, width, 3], 'int32');
  const rgbaTensor = tf.tensor3d(new Int32Array(pixels.rgba), [height, width, 4], 'int32');
  const inputs = {
    int32_rgb_tensor: rgbTensor,
    rgba_pixels: {data: pixels.rgba, width, height},
    rgb_pixels: {data: pixels.rgb, width, height},
    int32_rgba_tensor: rgbaTensor,
  };
  const times = Object.fromEntries(Object.keys(inputs).map((k) => [k, []]));
  for (const input of Object.values(inputs)) bioClip.embed(input);  // untimed: kernels, allocations
  // Interleaved, so a slow moment of a shared machine hits every input alike.
  for (let i = 0; i < runs; ++i) {
    for (const [name, input] of Object.entries(inputs)) times[name].push(time(() => bioClip.embed(input)));
    process.stderr.write(`${backend} run ${i + 1}/${runs}: ${Object.entries(times).map(([k, t]) => `${k} ${t[i].toFixed(0)} ms`).join(', ')}\n`);
  }
  const out = {embed_ms: Object.fromEntries(Object.entries(times).map(([k, t]) => [k, stats(t)]))};
  const reference = out.embed_ms.int32_rgb_tensor.median;
  out.ratio_over_int32_rgb_tensor = Object.fromEntries(Object.keys(inputs).filter((k) => k !== 'int32_rgb_tensor')
      .map((k) => [k, out.embed_ms[k].median / reference]));
  if (previousPathBackends.includes(backend)) {
    const R = bioClip.resolution;
    out.embed_ms.previous_rgba_path = stats([time(() => {
      const input = tf.tidy(() => {
        const rgbaInt = tf.tensor3d(Int32Array.from(pixels.rgba), [height, width, 4], 'int32');
        return tf.expandDims(squash(tf.cast(tf.slice(rgbaInt, [0, 0, 0], [-1, -1, 3]), 'float32'), R, 'area'), 0);
      });
      bioClip.embed(tf.squeeze(input, [0]));
      tf.dispose(input);
    })]);
    out.ratio_over_int32_rgb_tensor.previous_rgba_path = out.embed_ms.previous_rgba_path.median / reference;
  }
  tf.dispose([rgbTensor, rgbaTensor]);
  bioClip.dispose();
  return out;
}

async function main() {
  const manifest = JSON.parse(fs.readFileSync(path.join(exportDir, 'manifest.json'), 'utf8'));
  const pixels = photo();
  const result = {
    benchmark: 'react-bio-clip embed() of a large RGBA photo against an int32 tensor of the same pixels',
    goal: 'rgba_pixels <= 2 x int32_rgb_tensor (issue 14)',
    package_version: version,
    tfjs_version: tf.version.tfjs,
    node: process.version,
    machine: {cpus: os.cpus().length, cpu_model: os.cpus()[0] && os.cpus()[0].model, platform: `${os.platform()} ${os.arch()}`,
              loadavg_1min_at_start: os.loadavg()[0]},
    export: {dir: path.resolve(exportDir), resolution: manifest.resolution, embed_dim: manifest.embed_dim},
    photo: {width, height, megapixels: (width * height) / 1e6},
    runs,
    backends: {},
  };
  for (const backend of backends) result.backends[backend] = await benchBackend(backend, pixels);
  writeResult(FLAGS.out.value, result);
}

runMain(main);
