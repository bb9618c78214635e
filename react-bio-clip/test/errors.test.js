'use strict';
// Every expected failure is a typed BioClipError that names what was wrong.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const {
  load, BioClipError, BioClipInputError, BioClipMismatchError, BioClipFormatError, BioClipLoadError,
  BioClipDisposedError,
} = require('react-bio-clip');
const {loadFromDirectory, readExportDirectory} = require('react-bio-clip/node');
const h = require('./helpers');

/** A throwaway copy of an export directory to damage. */
function copyExport(dir) {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'bioclip-export-'));
  fs.cpSync(dir, copy, {recursive: true});
  return copy;
}

/** Serves a directory over HTTP (the URL path of load()). */
async function serve(dir) {
  const server = http.createServer((req, res) => {
    const file = path.join(dir, decodeURIComponent(new URL(req.url, 'http://x').pathname));
    fs.readFile(file, (err, data) => {
      if (err) {
        res.writeHead(404);
        res.end();
      } else {
        res.end(data);
      }
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {server, base: `http://127.0.0.1:${server.address().port}`};
}

async function rejectsWith(promise, ErrorClass, pattern) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof ErrorClass, `expected ${ErrorClass.name}, got ${error && error.constructor.name}: ${error && error.message}`);
    assert.ok(error instanceof BioClipError);
    if (pattern) assert.match(error.message, pattern);
    return true;
  });
}

test('typed errors', async (t) => {
  await h.useBackend('cpu');
  const bioClip = await loadFromDirectory(h.SMALL_DIR);
  const baseline = tf.memory().numTensors;

  await t.test('bad image shape, dtype or type', async () => {
    const cases = [
      [tf.zeros([8, 8]), /\[height, width, 3\|4\]/],
      [tf.zeros([8, 8, 2]), /shape \[8,8,2\]/],
      [tf.zeros([1, 8, 8, 3]), /shape \[1,8,8,3\]/],
      [tf.zeros([8, 8, 3], 'bool'), /int32 or float32/],
      [{data: new Uint8Array(10), width: 2, height: 2}, /10 bytes/],
      [{data: new Float32Array(12), width: 2, height: 2}, /Uint8Array/],
      [{data: new Uint8Array(12), width: 2.5, height: 2}, /positive integers/],
      [null, /expected a tf.Tensor3D/],
      ['photo.jpg', /expected a tf.Tensor3D/],
    ];
    for (const [image, pattern] of cases) {
      await rejectsWith(bioClip.classify(image), BioClipInputError, pattern);
      assert.throws(() => bioClip.embed(image), BioClipInputError);
      if (image instanceof tf.Tensor) image.dispose();
    }
    const disposed = tf.zeros([8, 8, 3]);
    disposed.dispose();
    await rejectsWith(bioClip.classify(disposed), BioClipInputError, /disposed/);
    await rejectsWith(bioClip.addTaxon('x', []), BioClipInputError);
    assert.strictEqual(tf.memory().numTensors, baseline);
  });

  await t.test('a label bank that does not belong to the model', async () => {
    const exportBin = () => new Uint8Array(fs.readFileSync(path.join(h.SMALL_DIR, 'labels/label_bank.bin')));
    const {model, manifest} = await readExportDirectory(h.SMALL_DIR);
    // The other export's bank: same taxa and text, but manifest.json records a different file.
    const other = await readExportDirectory(h.EXPORT_DIR);
    await rejectsWith(load({model, manifest, labels: other.labels}), BioClipMismatchError, /label_bank\.json/);
    // One flipped byte in the embeddings.
    const bin = new Uint8Array(fs.readFileSync(path.join(h.SMALL_DIR, 'labels/label_bank.bin')));
    bin[3] ^= 1;
    const json = fs.readFileSync(path.join(h.SMALL_DIR, 'labels/label_bank.json'));
    const names = fs.readFileSync(path.join(h.SMALL_DIR, 'labels/names.bin'));
    await rejectsWith(load({model, manifest, labels: {json, bin, names}}), BioClipMismatchError, /label_bank\.bin.*sha256/);
    // ... or in the names.
    const badNames = new Uint8Array(names);
    badNames[badNames.length - 2] ^= 1;
    await rejectsWith(load({model, manifest, labels: {json, bin: exportBin(), names: badNames}}), BioClipMismatchError, /names\.bin.*sha256/);
    // names.bin is required; a version 1 bank is refused by name.
    await rejectsWith(load({model, manifest, labels: {json, bin: exportBin()}}), BioClipInputError, /labels\.names is missing/);
    const v1 = {...JSON.parse(json), format_version: 1};
    await rejectsWith(load({model, manifest: {...manifest, files: undefined}, labels: {json: v1, bin: exportBin(), names}}),
                      BioClipFormatError, /format_version 1 is not supported.*re-export/);
    // Another width, or another species count, given as parsed objects (no hashes to compare).
    const narrow = h.handBank([[['A', 'B', 'C', 'D', 'E', 'F', 'g'], '', 1]], 16);
    const noHashes = {...manifest, files: undefined};
    await rejectsWith(load({model, manifest: noHashes, labels: narrow}), BioClipMismatchError, /embed_dim 16/);
    const fewer = h.handBank([[['A', 'B', 'C', 'D', 'E', 'F', 'g'], '', 1]], manifest.embed_dim);
    await rejectsWith(load({model, manifest: noHashes, labels: fewer}), BioClipMismatchError, /1 species but the model's manifest says 8/);
  });

  await t.test('a model that does not match its manifest', async () => {
    const small = await readExportDirectory(h.SMALL_DIR);
    const big = await readExportDirectory(h.EXPORT_DIR);
    await rejectsWith(load({model: small.model, manifest: big.manifest, labels: big.labels}), BioClipMismatchError, /224/);
    await rejectsWith(load({model: small.model, labels: small.labels}), BioClipFormatError, /manifest/);
    await rejectsWith(load({model: small.model, labels: small.labels, manifest: {...small.manifest, format_version: 99}}),
                      BioClipFormatError, /format_version 99/);
  });

  await t.test('a missing or damaged weight shard', async () => {
    const copy = copyExport(h.SMALL_DIR);
    const shard = fs.readdirSync(path.join(copy, 'tfjs')).find((f) => f.endsWith('.bin'));
    fs.rmSync(path.join(copy, 'tfjs', shard));
    await rejectsWith(loadFromDirectory(copy), BioClipLoadError, new RegExp(shard.replace('.', '\\.')));
    const {server, base} = await serve(copy);
    try {
      await rejectsWith(load({model: `${base}/tfjs/model.json`, labels: `${base}/labels/label_bank.json`}),
                        BioClipLoadError, /HTTP 404/);
      fs.cpSync(path.join(h.SMALL_DIR, 'tfjs', shard), path.join(copy, 'tfjs', shard));
      const bytes = fs.readFileSync(path.join(copy, 'tfjs', shard));
      bytes[bytes.length - 1] ^= 0xff;
      fs.writeFileSync(path.join(copy, 'tfjs', shard), bytes);
      await rejectsWith(load({model: `${base}/tfjs/model.json`, labels: `${base}/labels/label_bank.json`}),
                        BioClipMismatchError, /sha256/);
      await rejectsWith(loadFromDirectory(copy), BioClipMismatchError, /sha256/);
    } finally {
      server.close();
      fs.rmSync(copy, {recursive: true, force: true});
    }
  });

  await t.test('URLs work end to end (manifest found next to tfjs/)', async () => {
    const {server, base} = await serve(h.SMALL_DIR);
    try {
      const viaUrl = await load({model: `${base}/tfjs/model.json`, labels: `${base}/labels/label_bank.json`});
      const square = h.decodeJpeg('square_a');
      assert.deepStrictEqual(Array.from(viaUrl.embed(square)), Array.from(bioClip.embed(square)));
      viaUrl.dispose();
    } finally {
      server.close();
    }
  });

  await t.test('use after dispose', async () => {
    bioClip.dispose();
    await rejectsWith(bioClip.classify(h.decodeJpeg('square_a')), BioClipDisposedError);
    assert.throws(() => bioClip.embed(h.decodeJpeg('square_a')), BioClipDisposedError);
    assert.strictEqual(tf.memory().numTensors, 0);
  });
});
