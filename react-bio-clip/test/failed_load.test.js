'use strict';
// A failed load() frees everything it made: 1,000 failed loads, of every kind that fails at a
// different stage (before the weights are decoded, half way through decoding, after the graph
// is built, during the warm-up inference), leave tf.memory().numTensors where it was. Each
// failure is also the typed error that names what was wrong.
const test = require('node:test');
const assert = require('node:assert');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const {load, BioClipError, BioClipFormatError, BioClipLoadError, BioClipMismatchError} = require('react-bio-clip');
const {loadFromDirectory, readExportDirectory} = require('react-bio-clip/node');
const h = require('./helpers');

const LOADS = 1000;
const sha256 = (bytes) => crypto.createHash('sha256').update(bytes).digest('hex');
const clone = (x) => JSON.parse(JSON.stringify(x));

/** An export directory whose weight shard is cut short, with the manifest re-hashed to match it. */
function truncatedShardExport() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbc-truncated-'));
  fs.cpSync(h.SMALL_DIR, dir, {recursive: true});
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  const shard = Object.keys(manifest.files).find((f) => f.startsWith('tfjs/') && f.endsWith('.bin'));
  const bytes = fs.readFileSync(path.join(dir, shard));
  const cut = bytes.subarray(0, Math.floor(bytes.length / 3));
  fs.writeFileSync(path.join(dir, shard), cut);
  manifest.files[shard] = {sha256: sha256(cut), bytes: cut.length};
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
  return dir;
}

/** Model artifacts with one graph node changed, for tf.io.fromMemory. */
function artifactsWith(artifacts, edit) {
  const copy = {...artifacts, modelTopology: clone(artifacts.modelTopology), weightSpecs: clone(artifacts.weightSpecs)};
  edit(copy);
  return copy;
}

test(`no tensor leaks over ${LOADS} failed loads`, async () => {
  await h.useBackend('cpu');
  const good = await readExportDirectory(h.SMALL_DIR);
  const big = await readExportDirectory(h.EXPORT_DIR);
  const artifacts = await good.model.load();
  const noHashes = {...good.manifest, files: undefined};
  const truncatedDir = truncatedShardExport();
  const binBytes = good.labels.bin;
  const cutBin = binBytes.subarray(0, 100);
  const cutBankJson = JSON.parse(new TextDecoder().decode(good.labels.json));
  cutBankJson.files['label_bank.bin'] = {bytes: cutBin.byteLength, sha256: sha256(cutBin)};
  const kinds = {
    // Decoding stops half way through the weights (this leaked 13 tensors per load before).
    'truncated shard whose hash matches': [() => loadFromDirectory(truncatedDir), BioClipFormatError, /truncated/],
    // All weights decode, then building the graph fails (a topology without its versions).
    'malformed topology': [() => load({
      model: tf.io.fromMemory(artifactsWith(artifacts, (a) => { delete a.modelTopology.versions; })),
      labels: good.labels, manifest: noHashes,
    }), BioClipLoadError, /could not load the TF.js graph model/],
    // The graph builds, then its first run meets an op TF.js does not know.
    'an op TF.js lacks': [() => load({
      model: tf.io.fromMemory(artifactsWith(artifacts, (a) => { a.modelTopology.node.find((n) => n.op === 'Relu').op = 'NoSuchOp'; })),
      labels: good.labels, manifest: noHashes,
    }), BioClipLoadError, /NoSuchOp/],
    // A weight whose shape does not fit the graph: the graph builds, the warm-up inference fails.
    'weights that do not fit the graph': [() => load({
      model: tf.io.fromMemory(artifactsWith(artifacts, (a) => {
        const kernel = a.weightSpecs.find((s) => s.shape.length === 4 && s.shape[2] !== s.shape[3]);
        kernel.shape = [kernel.shape[0], kernel.shape[1], kernel.shape[3], kernel.shape[2]];
      })),
      labels: good.labels, manifest: noHashes,
    }), BioClipLoadError, /warm-up inference/],
    // Cut short, with the hash label_bank.json records for it updated to match.
    'corrupt label bank (.bin cut short)': [() => load({
      model: tf.io.fromMemory(artifacts), labels: {json: cutBankJson, bin: cutBin, names: good.labels.names}, manifest: noHashes,
    }), BioClipFormatError, /bytes but the int8 rows end at/],
    'corrupt label bank (not JSON)': [() => load({
      model: tf.io.fromMemory(artifacts), labels: {json: new TextEncoder().encode('{"format_version": 2,'), bin: binBytes, names: good.labels.names},
      manifest: noHashes,
    }), BioClipFormatError, /not valid JSON/],
    // The other export's manifest: found out after the graph is built (its input is 32, not 224).
    'wrong manifest': [() => load({model: tf.io.fromMemory(artifacts), labels: big.labels, manifest: big.manifest}),
      BioClipMismatchError, /224/],
    // Manifest and bank agree on a width the model does not output: found out by the warm-up.
    'model output width differs from the manifest': [() => load({
      model: tf.io.fromMemory(artifacts), ...(() => {
        const bank = h.handBank([[['A', 'B', 'C', 'D', 'E', 'F', 'g'], '', 1]], 16);
        return {labels: bank.labels, manifest: {...bank.manifest, embed_dim: 16}};
      })(),
    }), BioClipMismatchError, /outputs shape \[1,32\]/],
  };
  const names = Object.keys(kinds);
  // One of each first: any lazily made, kept state of tfjs itself (kernels, backend scratch) is
  // made now and does not count.
  for (const name of names) await kinds[name][0]().catch(() => {});
  const baseline = tf.memory().numTensors;
  const counts = Object.fromEntries(names.map((n) => [n, 0]));
  for (let i = 0; i < LOADS; ++i) {
    const name = names[i % names.length];
    const [attempt, ErrorClass, pattern] = kinds[name];
    await assert.rejects(attempt(), (error) => {
      assert.ok(error instanceof ErrorClass, `${name}: expected ${ErrorClass.name}, got ${error.constructor.name}: ${error.message}`);
      if (pattern) assert.match(error.message, pattern, name);
      return true;
    });
    ++counts[name];
    if (i % names.length === names.length - 1) {
      assert.strictEqual(tf.memory().numTensors, baseline, `leaked tensors after ${i + 1} failed loads`);
    }
  }
  assert.strictEqual(tf.memory().numTensors, baseline, `${tf.memory().numTensors - baseline} tensors leaked over ${LOADS} failed loads`);
  assert.strictEqual(Object.values(counts).reduce((a, b) => a + b), LOADS);
  // And a good load still works next to them.
  const bioClip = await loadFromDirectory(h.SMALL_DIR);
  bioClip.dispose();
  assert.strictEqual(tf.memory().numTensors, baseline);
  fs.rmSync(truncatedDir, {recursive: true, force: true});
});
