'use strict';
// scripts/run_tfjs.js, the command line the Python side (bioclip_lite_tf.evaluate, the benches)
// runs: its protocol (last stdout line one JSON object, errors non-zero with a message on
// stderr) and that `infer` gives what the package's own graph model gives.
const test = require('node:test');
const assert = require('node:assert');
const {spawnSync} = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const {loadGraphModelFromDirectory} = require('react-bio-clip/node');
const h = require('./helpers');

const RUNNER = path.join(__dirname, '..', 'scripts', 'run_tfjs.js');
const MODEL_DIR = path.join(h.SMALL_DIR, 'tfjs');
const LABELS_DIR = path.join(h.SMALL_DIR, 'labels');
const R = h.fixtureManifest().resolution;

function run(args) {
  const proc = spawnSync(process.execPath, [RUNNER, ...args], {encoding: 'utf8'});
  return {status: proc.status, stderr: proc.stderr, json: () => JSON.parse(proc.stdout.trim().split('\n').pop())};
}

test('run_tfjs.js', async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'run-tfjs-'));
  t.after(() => fs.rmSync(tmp, {recursive: true, force: true}));
  const n = 3;
  const x = Float32Array.from({length: n * R * R * 3}, (_, i) => (i * 7919) % 256);
  const input = path.join(tmp, 'x.f32');
  fs.writeFileSync(input, Buffer.from(x.buffer));
  await h.useBackend('cpu');
  const graph = await loadGraphModelFromDirectory(MODEL_DIR);
  const expected = tf.tidy(() => graph.predict(tf.tensor4d(x, [n, R, R, 3]))).dataSync();
  graph.dispose();

  for (const backend of h.BACKENDS) {
    await t.test(`infer on ${backend}: raw float32 [N, D] out, as the package's graph model gives`, () => {
      const output = path.join(tmp, `y_${backend}.f32`);
      const proc = run(['infer', `--model_dir=${MODEL_DIR}`, `--input=${input}`, `--shape=${n},${R},${R},3`,
                        `--output=${output}`, `--backend=${backend}`, '--batch=2']);
      assert.strictEqual(proc.status, 0, proc.stderr);
      const info = proc.json();
      assert.deepStrictEqual(info, {n, dim: expected.length / n, backend});
      const y = new Float32Array(new Uint8Array(fs.readFileSync(output)).buffer);
      assert.strictEqual(y.length, expected.length);
      const maxDiff = Math.max(...Array.from(y, (v, i) => Math.abs(v - expected[i])));
      assert.ok(maxDiff <= (backend === 'cpu' ? 0 : 1e-5), `max abs difference ${maxDiff}`);
    });
  }

  await t.test('bench with and without a label bank: latency and peak bytes', () => {
    for (const extra of [[`--label_bank_dir=${LABELS_DIR}`], []]) {
      const proc = run(['bench', `--model_dir=${MODEL_DIR}`, `--resolution=${R}`, '--runs=2', '--backend=wasm', ...extra]);
      assert.strictEqual(proc.status, 0, proc.stderr);
      const info = proc.json();
      assert.deepStrictEqual(Object.keys(info).sort(), ['backend', 'latency_ms_mean', 'latency_ms_median', 'peak_bytes',
                                                         'resident_bytes', 'resolution', 'runs']);
      assert.strictEqual(info.backend, 'wasm');
      assert.strictEqual(info.resolution, R);
      assert.strictEqual(info.runs, 2);
      assert.ok(info.latency_ms_median > 0 && info.latency_ms_mean > 0);
      assert.ok(info.peak_bytes > info.resident_bytes && info.resident_bytes > 0, JSON.stringify(info));
    }
  });

  await t.test('errors exit non-zero with a message on stderr', () => {
    const cases = [
      [['frob', `--model_dir=${MODEL_DIR}`], /unknown mode frob/],
      [['infer', `--model_dir=${MODEL_DIR}`], /infer needs --input/],
      [['infer', `--model_dir=${tmp}`, `--input=${input}`, `--shape=${n},${R},${R},3`, `--output=${path.join(tmp, 'z.f32')}`],
        /could not read model .*model\.json/],
      [['infer', `--model_dir=${MODEL_DIR}`, `--input=${input}`, `--shape=2,${R},${R},3`, `--output=${path.join(tmp, 'z.f32')}`],
        /does not hold shape/],
      [['bench', `--model_dir=${MODEL_DIR}`, `--resolution=${R + 1}`, `--label_bank_dir=${LABELS_DIR}`], /the model's input is/],
    ];
    for (const [args, pattern] of cases) {
      const proc = run(args);
      assert.notStrictEqual(proc.status, 0, args.join(' '));
      assert.match(proc.stderr, pattern);
    }
  });
});
