#!/usr/bin/env node
// Runs an exported BioCLIP Lite TF.js graph model in Node through this package itself (the built
// dist/: run `npm run build` first) with the real @tensorflow/tfjs runtime, so what Python
// measures is what an app loads: the same file reading, graph fixes, label bank scoring
// and classify().
//
// Used by bioclip_lite_tf.evaluate (parity, latency, memory) and bench/latency_bench.py.
//
// Modes (one JSON object is printed on stdout as the last line; errors exit non-zero with a
// message on stderr):
//   infer --model_dir=D --input=X.f32 --shape=N,R,R,3 --output=Y.f32 [--backend=cpu|wasm]
//       D: a TF.js model folder (model.json + shards; no manifest or label bank needed).
//       X: raw little-endian float32 NHWC RGB 0..255; Y: raw float32 [N, D] embeddings.
//       Prints {n, dim, backend}.
//   bench --model_dir=D --resolution=R [--runs=K] [--backend=wasm] [--label_bank_dir=L]
//       per-photo latency (batch 1, median and mean of K runs after 3 warm-up runs) and the peak
//       tf.memory().numBytes during one classify (model weights and label bank included).
//       With L (label_bank.json, label_bank.bin, names.bin) one classify is the package's classify() of an
//       R x R photo (embedding, species softmax, rank sums, top-K); without it, the embedding
//       alone. D is a bare model folder, so load() gets a manifest made from R and the bank's
//       embed_dim. Prints {backend, resolution, runs, latency_ms_median, latency_ms_mean,
//       peak_bytes, resident_bytes}.
'use strict';

const fs = require('fs');
const path = require('path');

const PACKAGE_DIR = path.join(__dirname, '..');
const DIST = path.join(PACKAGE_DIR, 'dist');

function parseArgs(argv) {
  const args = {_: []};
  for (const a of argv) {
    const m = /^--([^=]+)=(.*)$/.exec(a);
    if (m) args[m[1]] = m[2]; else args._.push(a);
  }
  return args;
}

function fail(message) {
  process.stderr.write(`run_tfjs: ${message}\n`);
  process.exit(2);
}

function requireOrFail(id, fix) {
  try {
    return require(id);
  } catch (error) {
    if (error && error.code === 'MODULE_NOT_FOUND') fail(`cannot load ${id} (${fix})`);
    throw error;
  }
}

const tf = requireOrFail('@tensorflow/tfjs', `run \`npm ci\` in ${PACKAGE_DIR}`);
const core = requireOrFail(path.join(DIST, 'index.js'), `run \`npm run build\` in ${PACKAGE_DIR}`);
const node = requireOrFail(path.join(DIST, 'node', 'index.js'), `run \`npm run build\` in ${PACKAGE_DIR}`);

async function setBackend(name) {
  if (name === 'wasm') {
    const wasm = requireOrFail('@tensorflow/tfjs-backend-wasm', `run \`npm ci\` in ${PACKAGE_DIR}`);
    // Point at the .wasm files shipped inside the package (no network).
    wasm.setWasmPaths(path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')), '/'));
  }
  const ok = await tf.setBackend(name);
  if (!ok) fail(`backend ${name} failed to initialise`);
  await tf.ready();
}

async function infer(args) {
  const shape = args.shape.split(',').map(Number);
  if (shape.length !== 4 || !shape.every((s) => Number.isInteger(s) && s > 0)) fail(`--shape=${args.shape} is not N,R,R,3`);
  const buf = fs.readFileSync(args.input);
  const x = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  if (x.length !== shape.reduce((a, b) => a * b, 1)) fail(`${args.input} does not hold shape ${shape}`);
  const model = await node.loadGraphModelFromDirectory(args.model_dir);
  const batch = Number(args.batch || 16);
  const per = shape[1] * shape[2] * shape[3];
  const chunks = [];
  let dim = 0;
  for (let start = 0; start < shape[0]; start += batch) {
    const n = Math.min(batch, shape[0] - start);
    const y = tf.tidy(() => model.predict(
        tf.tensor4d(x.subarray(start * per, (start + n) * per), [n, shape[1], shape[2], shape[3]])));
    dim = y.shape[1];
    chunks.push(await y.data());
    y.dispose();
  }
  const out = new Float32Array(shape[0] * dim);
  let off = 0;
  for (const c of chunks) { out.set(c, off); off += c.length; }
  fs.writeFileSync(args.output, Buffer.from(out.buffer));
  return {n: shape[0], dim, backend: tf.getBackend()};
}

/** The package's classify() on an R x R photo, with the bank in labelDir. */
async function classifierWithBank(modelDir, labelDir, r) {
  const labels = await node.readLabelsDirectory(labelDir);
  const bank = JSON.parse(Buffer.from(labels.json).toString('utf8'));
  const manifest = {
    format: 'bioclip-lite-export', format_version: 1, embed_dim: bank.embed_dim, resolution: r,
    preprocessing: {resize: 'squash', interpolation: 'bicubic', mean: [], std: [], input: 'float32 RGB 0..255'},
  };
  const bioClip = await core.load({model: await node.readModelDirectory(modelDir), labels, manifest});
  const photo = tf.randomUniform([r, r, 3], 0, 255);
  return {photo, classify: async () => { await bioClip.classify(photo); }};
}

/** The embedding alone, on a [1, R, R, 3] photo. */
async function embedderOnly(modelDir, r) {
  const model = await node.loadGraphModelFromDirectory(modelDir);
  const photo = tf.randomUniform([1, r, r, 3], 0, 255);
  return {photo, classify: async () => {
    const y = tf.tidy(() => model.predict(photo));
    await y.data();
    y.dispose();
  }};
}

async function bench(args) {
  const r = Number(args.resolution);
  const runs = Number(args.runs || 20);
  if (!(Number.isInteger(r) && r > 0 && Number.isInteger(runs) && runs > 0)) fail('--resolution and --runs must be positive integers');
  const {photo, classify} = args.label_bank_dir ? await classifierWithBank(args.model_dir, args.label_bank_dir, r)
                                                : await embedderOnly(args.model_dir, r);
  for (let i = 0; i < 3; i++) await classify();
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await classify();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  // tf.profile records the engine's total numBytes at every kernel, weights included.
  const profile = await tf.profile(classify);
  const weightsBytes = tf.memory().numBytes - photo.size * 4;
  return {
    backend: tf.getBackend(), resolution: r, runs,
    latency_ms_median: times[Math.floor(times.length / 2)],
    latency_ms_mean: times.reduce((a, b) => a + b, 0) / times.length,
    peak_bytes: Math.max(profile.peakBytes, tf.memory().numBytes),
    resident_bytes: weightsBytes,
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const mode = args._[0];
  if (mode !== 'infer' && mode !== 'bench') fail(`unknown mode ${mode}; use infer or bench`);
  if (!args.model_dir) fail('--model_dir is required');
  if (mode === 'infer' && (!args.input || !args.shape || !args.output)) fail('infer needs --input, --shape, --output');
  if (mode === 'bench' && !args.resolution) fail('bench needs --resolution');
  await setBackend(args.backend || 'cpu');
  const result = mode === 'infer' ? await infer(args) : await bench(args);
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((e) => {
  // The package's typed errors name the bad file; anything else gets its stack.
  process.stderr.write(`run_tfjs: ${e instanceof core.BioClipError ? e.message : (e.stack || e)}\n`);
  process.exit(1);
});
