#!/usr/bin/env node
// Runs an exported BioCLIP Lite TF.js graph model in Node with the real @tensorflow/tfjs runtime.
//
// Used by bioclip_lite_tf.evaluate (parity, latency, memory) and bench/latency_bench.py.
// Pure @tensorflow/tfjs has no file-system IO handler in Node (that lives in tfjs-node, which
// downloads a binary at install and so cannot be used here): model.json and the shards are read
// with fs and handed to tf.io.fromMemory.
//
// Modes (one JSON object is printed on stdout as the last line):
//   infer --model_dir=D --input=X.f32 --shape=N,R,R,3 --output=Y.f32 [--backend=cpu|wasm]
//       X: raw little-endian float32 NHWC RGB 0..255; Y: raw float32 [N, D] embeddings.
//   bench --model_dir=D --resolution=R [--runs=K] [--backend=wasm] [--label_bank_dir=L]
//       per-photo latency (batch 1, median and mean after warm-up) and the peak
//       tf.memory().numBytes during one classify (model weights and label bank included).
'use strict';

const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

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

async function setBackend(name) {
  if (name === 'wasm') {
    const wasm = require('@tensorflow/tfjs-backend-wasm');
    // Point at the .wasm files shipped inside the package (no network).
    const dist = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')), '/');
    wasm.setWasmPaths(dist);
  }
  const ok = await tf.setBackend(name);
  if (!ok) fail(`backend ${name} failed to initialise`);
  await tf.ready();
}

function loadGraphModel(modelDir) {
  const jsonPath = path.join(modelDir, 'model.json');
  if (!fs.existsSync(jsonPath)) fail(`no model.json in ${modelDir}`);
  const modelJson = JSON.parse(fs.readFileSync(jsonPath, 'utf8'));
  const specs = [];
  const buffers = [];
  for (const group of modelJson.weightsManifest) {
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(modelDir, p)));
    specs.push(...group.weights);
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  return tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: modelJson.modelTopology,
    weightSpecs: specs,
    weightData,
    format: modelJson.format,
    generatedBy: modelJson.generatedBy,
    convertedBy: modelJson.convertedBy,
    signature: modelJson.signature,
    userDefinedMetadata: modelJson.userDefinedMetadata,
  }));
}

// The species text embeddings of a device label bank, dequantized once as the npm package does.
function loadSpeciesEmbeddings(labelDir) {
  const meta = JSON.parse(fs.readFileSync(path.join(labelDir, 'label_bank.json'), 'utf8'));
  const bin = fs.readFileSync(path.join(labelDir, 'label_bank.bin'));
  const emb = meta.species_embeddings;
  const [n, d] = emb.shape;
  const offset = emb.offset || 0;
  const view = new DataView(bin.buffer, bin.byteOffset, bin.byteLength);
  const out = new Float32Array(n * d);
  if (meta.dtype === 'int8') {
    const q = new Int8Array(bin.buffer, bin.byteOffset + offset, n * d);
    for (let i = 0; i < n; i++) {
      const scale = view.getFloat32(emb.scales_offset + 4 * i, true);
      for (let j = 0; j < d; j++) out[i * d + j] = q[i * d + j] * scale;
    }
  } else {
    fail(`label bank dtype ${meta.dtype} is not read by this runner (int8 only)`);
  }
  return {matrix: tf.tensor2d(out, [n, d]), logitScale: meta.logit_scale};
}

async function infer(args) {
  const shape = args.shape.split(',').map(Number);
  const buf = fs.readFileSync(args.input);
  const x = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  if (x.length !== shape.reduce((a, b) => a * b, 1)) fail(`${args.input} does not hold shape ${shape}`);
  const model = await loadGraphModel(args.model_dir);
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

async function bench(args) {
  const r = Number(args.resolution);
  const runs = Number(args.runs || 20);
  const model = await loadGraphModel(args.model_dir);
  const bank = args.label_bank_dir ? loadSpeciesEmbeddings(args.label_bank_dir) : null;
  const photo = tf.randomUniform([1, r, r, 3], 0, 255);
  const classify = () => tf.tidy(() => {
    const emb = model.predict(photo);
    if (!bank) return emb;
    return tf.softmax(tf.mul(tf.matMul(emb, bank.matrix, false, true), bank.logitScale));
  });
  for (let i = 0; i < 3; i++) { const y = classify(); await y.data(); y.dispose(); }
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    const y = classify();
    await y.data();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    y.dispose();
  }
  times.sort((a, b) => a - b);
  // tf.profile records the engine's total numBytes at every kernel, weights included.
  const profile = await tf.profile(async () => { const y = classify(); await y.data(); y.dispose(); });
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
  if (!args.model_dir) fail('--model_dir is required');
  await setBackend(args.backend || 'cpu');
  let result;
  if (mode === 'infer') {
    if (!args.input || !args.shape || !args.output) fail('infer needs --input, --shape, --output');
    result = await infer(args);
  } else if (mode === 'bench') {
    if (!args.resolution) fail('bench needs --resolution');
    result = await bench(args);
  } else {
    fail(`unknown mode ${mode}; use infer or bench`);
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((e) => { process.stderr.write(`run_tfjs: ${e.stack || e}\n`); process.exit(1); });
