'use strict';
// react-bio-clip/node's folder readers: a bare TF.js model folder (no manifest, no label bank)
// loads and embeds exactly as load() does, and with a manifest every file is hash-checked.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const {load, BioClipLoadError, BioClipMismatchError} = require('react-bio-clip');
const {
  loadFromDirectory, loadGraphModelFromDirectory, readLabelsDirectory, readModelDirectory,
} = require('react-bio-clip/node');
const h = require('./helpers');

/** A throwaway copy of one folder of an export. */
function copyFolder(dir) {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'bioclip-folder-'));
  fs.cpSync(dir, copy, {recursive: true});
  return copy;
}

function flipLastByte(file) {
  const bytes = fs.readFileSync(file);
  bytes[bytes.length - 1] ^= 0xff;
  fs.writeFileSync(file, bytes);
}

for (const backend of h.BACKENDS) {
  test(`loadGraphModelFromDirectory on the ${backend} backend: a bare model folder embeds as load() does`, async () => {
    await h.useBackend(backend);
    const folder = copyFolder(path.join(h.SMALL_DIR, 'tfjs'));  // no manifest.json, no labels/ next to it
    try {
      const bioClip = await loadFromDirectory(h.SMALL_DIR);
      const baseline = tf.memory().numTensors;
      const graph = await loadGraphModelFromDirectory(folder);
      const R = bioClip.resolution;
      const photo = tf.randomUniform([R, R, 3], 0, 255, 'float32', 7);
      const fromGraph = tf.tidy(() => graph.predict(tf.expandDims(photo, 0)));
      assert.deepStrictEqual(fromGraph.shape, [1, bioClip.embedDim]);
      assert.deepStrictEqual(Array.from(await fromGraph.data()), Array.from(bioClip.embed(photo)));
      fromGraph.dispose();
      photo.dispose();
      graph.dispose();
      assert.strictEqual(tf.memory().numTensors, baseline);
      bioClip.dispose();
    } finally {
      fs.rmSync(folder, {recursive: true, force: true});
    }
  });
}

test('readModelDirectory and readLabelsDirectory: load() pieces, hash-checked only with a manifest', async (t) => {
  await h.useBackend('cpu');
  const manifest = h.fixtureManifest();

  await t.test('with the export\'s manifest they make a BioClip like loadFromDirectory', async () => {
    const bioClip = await load({
      model: await readModelDirectory(path.join(h.SMALL_DIR, 'tfjs'), manifest),
      labels: await readLabelsDirectory(path.join(h.SMALL_DIR, 'labels'), manifest),
      manifest,
    });
    const reference = await loadFromDirectory(h.SMALL_DIR);
    const pixels = {data: new Uint8Array(3 * 40 * 30).map((_, i) => (i * 37) % 256), width: 40, height: 30};
    const [a, b] = [await bioClip.classify(pixels), await reference.classify(pixels)];
    assert.deepStrictEqual(a.species.map((s) => s.index), b.species.map((s) => s.index));
    assert.deepStrictEqual(Array.from(a.embedding), Array.from(b.embedding));
    bioClip.dispose();
    reference.dispose();
  });

  await t.test('a damaged shard or bank file is refused with the manifest, read without it', async () => {
    const models = copyFolder(path.join(h.SMALL_DIR, 'tfjs'));
    const labels = copyFolder(path.join(h.SMALL_DIR, 'labels'));
    try {
      const shard = fs.readdirSync(models).find((f) => f.endsWith('.bin'));
      flipLastByte(path.join(models, shard));
      flipLastByte(path.join(labels, 'label_bank.bin'));
      await assert.rejects(readModelDirectory(models, manifest),
                           (e) => e instanceof BioClipMismatchError && e.message.includes(shard));
      await assert.rejects(readLabelsDirectory(labels, manifest),
                           (e) => e instanceof BioClipMismatchError && e.message.includes('label_bank.bin'));
      const artifacts = await (await readModelDirectory(models)).load();
      assert.ok(artifacts.modelTopology && artifacts.weightSpecs.length > 0 && artifacts.weightData);
      const read = await readLabelsDirectory(labels);
      assert.ok(read.json instanceof Uint8Array && read.bin instanceof Uint8Array);
    } finally {
      fs.rmSync(models, {recursive: true, force: true});
      fs.rmSync(labels, {recursive: true, force: true});
    }
  });

  await t.test('a folder without model.json is a BioClipLoadError naming the file', async () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'bioclip-empty-'));
    try {
      await assert.rejects(loadGraphModelFromDirectory(empty),
                           (e) => e instanceof BioClipLoadError && e.message.includes(path.join(empty, 'model.json')));
    } finally {
      fs.rmSync(empty, {recursive: true, force: true});
    }
  });
});
