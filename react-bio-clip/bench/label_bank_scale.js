#!/usr/bin/env node
'use strict';
/**
 * The device label bank at TreeOfLife scale in Node (TF.js wasm backend): load time, resident
 * bytes and classify latency with a 454k x 512 int8 bank, beside the student backbone's own
 * embed time in the same run.
 *
 *   python react-bio-clip/bench/make_scale_bank.py --out_dir=BANK          # the 454k bank
 *   python react-bio-clip/bench/make_bench_export.py --out_dir=EXPORT      # shipped architecture
 *   node --expose-gc bench/label_bank_scale.js --bank_dir=BANK --export_dir=EXPORT \
 *       [--out=../bench/results/label_bank_scale.json] [--runs=10]
 *
 * EXPORT gives the model (the backbone); its own label bank is only the baseline. The result is
 * written by read-modify-write: keys this bench does not own (`compact`, written by the compact
 * bank bench) are kept. A benchmark, not a test: nothing is asserted about time. Timings on a
 * shared machine are slowed by other work: compare the ratios (classify / backbone), measured
 * in the same run, and see `machine.loadavg`.
 */
const fs = require('fs');
const os = require('os');
const path = require('path');

const {parseFlags, runMain, writeResult} = require('./flags');

const FLAGS = {
  bank_dir: {help: 'Device label bank folder (make_scale_bank.py writes one; required).', value: ''},
  export_dir: {help: 'Export directory whose model is the backbone (required).', value: ''},
  out: {help: 'JSON file to update.', value: path.join(__dirname, '..', '..', 'bench', 'results', 'label_bank_scale.json')},
  runs: {help: 'Timed calls of each kind.', value: '10'},
  backend: {help: 'TF.js backend: wasm or cpu.', value: 'wasm'},
};
parseFlags(FLAGS, 'node --expose-gc bench/label_bank_scale.js --bank_dir=BANK --export_dir=EXPORT [flags]');
const usage = FLAGS.usage;
const bankDir = FLAGS.bank_dir.value;
const exportDir = FLAGS.export_dir.value;
if (!bankDir || !exportDir) usage('--bank_dir and --export_dir are required');
if (!fs.existsSync(path.join(bankDir, 'label_bank.json'))) usage(`${bankDir}/label_bank.json does not exist`);
if (!fs.existsSync(path.join(exportDir, 'manifest.json'))) usage(`${exportDir}/manifest.json does not exist`);
const runs = Number(FLAGS.runs.value);
if (!(Number.isInteger(runs) && runs > 0)) usage('--runs must be a positive integer');
if (!['wasm', 'cpu'].includes(FLAGS.backend.value)) usage(`unknown backend ${FLAGS.backend.value}`);

const tf = require('@tensorflow/tfjs');
const {load, version} = require('react-bio-clip');
const {loadFromDirectory, readLabelsDirectory, readModelDirectory} = require('react-bio-clip/node');

function gc() {
  if (global.gc) {
    global.gc();
    global.gc();
  }
}

function memory() {
  gc();
  const m = process.memoryUsage();
  return {rss: m.rss, arrayBuffers: m.arrayBuffers, heapUsed: m.heapUsed, tf: tf.memory().numBytes};
}

function median(times) {
  const sorted = [...times].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function time(fn) {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** Smooth synthetic RGB pixels at the model's resolution (no resize). */
function photo(size) {
  const data = new Uint8Array(size * size * 3);
  for (let i = 0; i < data.length; ++i) data[i] = (128 + 100 * Math.sin(i / 97)) | 0;
  return {data, width: size, height: size};
}

async function main() {
  if (!global.gc) process.stderr.write('warning: run with node --expose-gc for stable memory figures\n');
  const backend = FLAGS.backend.value;
  if (backend === 'wasm') require('@tensorflow/tfjs-backend-wasm');
  if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} did not initialise`);
  await tf.ready();
  const exportManifest = JSON.parse(fs.readFileSync(path.join(exportDir, 'manifest.json'), 'utf8'));
  const bankJson = JSON.parse(fs.readFileSync(path.join(bankDir, 'label_bank.json'), 'utf8'));
  const bankFileBytes = Object.values(bankJson.files).reduce((sum, f) => sum + f.bytes, 0) +
                        fs.statSync(path.join(bankDir, 'label_bank.json')).size;

  // Baseline: the model with the export's own (small) bank, warm.
  const small = await loadFromDirectory(exportDir);
  const input = photo(small.resolution);
  await small.classify(input);
  small.dispose();
  const base = memory();

  // The 454k bank: read the files (sha256-checked against label_bank.json), parse, load.
  let labels;
  let bioClip;
  const readMs = await time(async () => {
    labels = await readLabelsDirectory(bankDir);
  });
  const manifest = {...exportManifest, label_bank: {num_species: bankJson.num_species, dtype: bankJson.rows.dtype}};
  manifest.files = Object.fromEntries(Object.entries(exportManifest.files || {}).filter(([p]) => !p.startsWith('labels/')));
  const model = await readModelDirectory(path.join(exportDir, 'tfjs'), manifest);
  const loadCallMs = await time(async () => {
    bioClip = await load({model, labels, manifest});
  });
  labels = null;  // the model keeps what it needs (views into label_bank.bin)
  const loaded = memory();

  // Backbone vs classify at 454k, interleaved so both see the same machine load.
  for (let i = 0; i < 2; ++i) {
    bioClip.embed(input);
    await bioClip.classify(input);
  }
  const embedding = bioClip.embed(input);
  const backbone = [];
  const classify = [];
  const scoring = [];
  for (let i = 0; i < runs; ++i) {
    backbone.push(await time(() => bioClip.embed(input)));
    classify.push(await time(() => bioClip.classify(input)));
    scoring.push(await time(() => bioClip.classifyEmbedding(embedding)));
  }
  // The same scoring on the plain-JS path (what Hermes runs), in the same run.
  const bank = bioClip.bank;
  const kernel = bank.kernel;
  const plainJs = [];
  if (kernel) {
    bank.kernel = null;
    for (let i = 0; i < Math.min(runs, 3); ++i) plainJs.push(await time(() => bioClip.classifyEmbedding(embedding)));
    bank.kernel = kernel;
  }
  // restrictTo a clade: only its rows are scored (the list's rows are gathered on first use).
  const top = await bioClip.classifyEmbedding(embedding, {topK: 1});
  const family = top.ranks.family[0].taxon;
  const order = top.ranks.order[0].taxon;
  const restricted = {};
  for (const [name, taxon] of [['family', family], ['order', order]]) {
    const first = await time(() => bioClip.classify(input, {restrictTo: taxon}));
    const times = [];
    for (let i = 0; i < runs; ++i) times.push(await time(() => bioClip.classify(input, {restrictTo: taxon})));
    const count = bioClip.restrictions.get(taxon).count;
    restricted[name] = {taxon, species: count, first_call_ms: first, classify_ms: median(times)};
  }
  const after = memory();
  bioClip.dispose();

  const backboneMs = median(backbone);
  const classifyMs = median(classify);
  const residentRss = loaded.rss - base.rss;
  const result = {
    benchmark: 'react-bio-clip label bank at TreeOfLife scale (Node, TF.js)',
    package_version: version, tfjs_version: tf.version.tfjs, node: process.version, backend,
    num_species: bankJson.num_species,
    embed_dim: bankJson.embed_dim,
    rows_dtype: bankJson.rows.dtype,
    bank_dir: path.resolve(bankDir),
    bank_file_bytes: bankFileBytes,
    bank_files: Object.fromEntries(Object.entries(bankJson.files).map(([name, f]) => [name, f.bytes])),
    resident_bytes: residentRss,
    resident_over_file_bytes: residentRss / bankFileBytes,
    resident_detail: {
      rss_delta_bytes: residentRss,
      array_buffers_delta_bytes: loaded.arrayBuffers - base.arrayBuffers,
      js_heap_delta_bytes: loaded.heapUsed - base.heapUsed,
      tf_memory_delta_bytes: loaded.tf - base.tf,
      rss_delta_after_runs_bytes: after.rss - base.rss,
      note: 'deltas against the same model loaded with the export\'s small bank, after gc',
    },
    load_ms: readMs + loadCallMs,
    load_detail: {read_files_ms: readMs, load_call_ms: loadCallMs,
                  note: 'read_files: the bank files read and sha256-checked; load_call: load() with the model (graph, warm-up) and the bank parsed'},
    classify_ms: classifyMs,
    backbone_ms: backboneMs,
    classify_over_backbone: classifyMs / backboneMs,
    scoring_ms: median(scoring),
    scoring_path: kernel ? 'WebAssembly SIMD kernel (int8)' : 'plain JS',
    scoring_ms_plain_js: plainJs.length ? median(plainJs) : median(scoring),
    classify_over_backbone_plain_js: ((plainJs.length ? median(plainJs) : median(scoring)) + backboneMs) / backboneMs,
    restricted,
    backbone: {
      export_dir: path.resolve(exportDir),
      resolution: exportManifest.resolution,
      config: (exportManifest.source && (exportManifest.source.config || exportManifest.source.workdir)) || null,
      tfjs_bytes: Object.entries(exportManifest.files || {}).filter(([p]) => p.startsWith('tfjs/')).reduce((s, [, f]) => s + (f.bytes || 0), 0),
    },
    runs,
    machine: {cpus: os.cpus().length, cpu_model: os.cpus()[0] && os.cpus()[0].model, platform: `${os.platform()} ${os.arch()}`,
              loadavg: os.loadavg(), total_mem_bytes: os.totalmem()},
    created: new Date().toISOString(),
  };
  const outPath = path.resolve(FLAGS.out.value);
  let previous = {};
  if (fs.existsSync(outPath)) previous = JSON.parse(fs.readFileSync(outPath, 'utf8'));
  // Read-modify-write: every key this bench does not write (e.g. `compact`) is kept.
  writeResult(outPath, {...previous, ...result});
  process.stderr.write(`${bankJson.num_species} species: load ${result.load_ms.toFixed(0)} ms, resident ${(residentRss / 1e6).toFixed(1)} MB ` +
                       `(${result.resident_over_file_bytes.toFixed(3)}x the ${(bankFileBytes / 1e6).toFixed(1)} MB of files), classify ` +
                       `${classifyMs.toFixed(1)} ms vs backbone ${backboneMs.toFixed(1)} ms (${result.classify_over_backbone.toFixed(2)}x)\n`);
}

runMain(main);
