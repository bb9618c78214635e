#!/usr/bin/env node
'use strict';
/**
 * classify() latency of react-bio-clip in Node, per TF.js backend (cpu, wasm), and the peak
 * tf.memory().numBytes during one classify (model weights and label bank included).
 *
 *   node bench/classify_latency.js --export_dir=DIR [--out=../bench/results/tfjs_node.json]
 *       [--backends=wasm,cpu] [--runs=20] [--warmup=3]
 *
 * DIR is an export directory (docs/FORMATS.md section 4); bench/make_bench_export.py writes one
 * with the real student architecture. Writes one JSON file (atomically: tmp + rename).
 * A benchmark, not a test: nothing is asserted about time.
 */
const fs = require('fs');
const os = require('os');
const path = require('path');

const {parseFlags, runMain, writeResult} = require('./flags');

const FLAGS = {
  export_dir: {help: 'Export directory to benchmark (required).', value: ''},
  out: {help: 'JSON file to write.', value: path.join(__dirname, '..', '..', 'bench', 'results', 'tfjs_node.json')},
  backends: {help: 'Comma list of TF.js backends: wasm, cpu.', value: 'wasm,cpu'},
  runs: {help: 'Timed classify calls per backend and input.', value: '20'},
  warmup: {help: 'Untimed calls first (kernel compilation, caches).', value: '3'},
};

parseFlags(FLAGS, 'node bench/classify_latency.js --export_dir=DIR [flags]');
const usage = FLAGS.usage;
const exportDir = FLAGS.export_dir.value;
if (!exportDir) usage('--export_dir is required');
if (!fs.existsSync(path.join(exportDir, 'manifest.json'))) usage(`${exportDir}/manifest.json does not exist`);
const runs = Number(FLAGS.runs.value);
const warmup = Number(FLAGS.warmup.value);
if (!(Number.isInteger(runs) && runs > 0 && Number.isInteger(warmup) && warmup >= 0)) usage('--runs and --warmup must be integers');
const backends = FLAGS.backends.value.split(',').filter(Boolean);
for (const b of backends) if (!['cpu', 'wasm'].includes(b)) usage(`unknown backend ${b}`);

const tf = require('@tensorflow/tfjs');
const {loadFromDirectory} = require('react-bio-clip/node');
const {version} = require('react-bio-clip');

function stats(times) {
  const sorted = [...times].sort((a, b) => a - b);
  const pick = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return {
    n: times.length, median: pick(0.5), p90: pick(0.9), min: sorted[0],
    mean: times.reduce((a, b) => a + b, 0) / times.length,
  };
}

/** Smooth synthetic RGB pixels, uint8 [h * w * 3]. */
function photo(width, height) {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; ++y) {
    for (let x = 0; x < width; ++x) {
      const i = 3 * (y * width + x);
      data[i] = 128 + 100 * Math.sin(x / 17);
      data[i + 1] = 128 + 100 * Math.cos(y / 23);
      data[i + 2] = (x + y) % 256;
    }
  }
  return {data, width, height};
}

async function time(fn) {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

async function benchBackend(backend) {
  if (backend === 'wasm') require('@tensorflow/tfjs-backend-wasm');
  if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} did not initialise`);
  await tf.ready();
  let bioClip;
  const loadMs = await time(async () => {
    bioClip = await loadFromDirectory(exportDir);
  });
  const R = bioClip.resolution;
  const inputs = {
    [`photo_${R}x${R}`]: photo(R, R),                 // a TreeOfLife-sized photo: no resize
    camera_frame_640x480: photo(640, 480),            // squashed with the 'area' resize
  };
  const out = {load_ms: loadMs, classify_ms: {}, embed_ms: {}};
  for (const [name, input] of Object.entries(inputs)) {
    for (let i = 0; i < warmup; ++i) await bioClip.classify(input);
    const classifyTimes = [];
    for (let i = 0; i < runs; ++i) classifyTimes.push(await time(() => bioClip.classify(input)));
    out.classify_ms[name] = stats(classifyTimes);
    const embedTimes = [];
    for (let i = 0; i < runs; ++i) embedTimes.push(await time(() => bioClip.embed(input)));
    out.embed_ms[name] = stats(embedTimes);
    process.stderr.write(`${backend} ${name}: classify median ${out.classify_ms[name].median.toFixed(1)} ms\n`);
  }
  const embedding = bioClip.embed(inputs[`photo_${R}x${R}`]);
  const scoring = [];
  for (let i = 0; i < runs; ++i) scoring.push(await time(() => bioClip.classifyEmbedding(embedding)));
  out.classify_embedding_ms = stats(scoring);  // label-bank scoring alone: matMul, softmax, rank sums
  const profile = await tf.profile(() => bioClip.classify(inputs[`photo_${R}x${R}`]));
  out.peak_bytes = profile.peakBytes;
  out.resident_bytes = tf.memory().numBytes;  // model weights + label bank tensors between calls
  bioClip.dispose();
  return out;
}

async function main() {
  const manifest = JSON.parse(fs.readFileSync(path.join(exportDir, 'manifest.json'), 'utf8'));
  const tfjsBytes = Object.entries(manifest.files || {})
      .filter(([p]) => p.startsWith('tfjs/')).reduce((sum, [, f]) => sum + (f.bytes || 0), 0);
  const result = {
    benchmark: 'react-bio-clip classify() in Node',
    package_version: version,
    tfjs_version: tf.version.tfjs,
    node: process.version,
    machine: {cpus: os.cpus().length, cpu_model: os.cpus()[0] && os.cpus()[0].model, platform: `${os.platform()} ${os.arch()}`},
    export: {
      dir: path.resolve(exportDir), resolution: manifest.resolution, embed_dim: manifest.embed_dim,
      num_species: manifest.label_bank && manifest.label_bank.num_species, tfjs_bytes: tfjsBytes,
      teacher_real_weights: manifest.teacher && manifest.teacher.real_weights,
    },
    runs, warmup,
    backends: {},
    latency_ms: {},
    memory: {tfjs_peak_bytes: {}},
  };
  for (const backend of backends) {
    const r = await benchBackend(backend);
    result.backends[backend] = r;
    const key = `photo_${manifest.resolution}x${manifest.resolution}`;
    result.latency_ms[`tfjs_${backend}`] = {[String(manifest.resolution)]: r.classify_ms[key].median};
    result.memory.tfjs_peak_bytes[`${backend}_${manifest.resolution}`] = r.peak_bytes;
  }
  writeResult(FLAGS.out.value, result);
}

runMain(main);
