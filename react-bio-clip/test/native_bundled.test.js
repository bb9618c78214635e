'use strict';
// The bundled export flow of react-bio-clip/native: Metro asset ids -> bytes, asynchronously,
// into load(); the typed error for an asset id passed where bytes belong.
//
// MOCKED, and only this: expo-asset and expo-file-system (native modules: the app bundle's
// assets and the phone's file system), and tfjs-react-native's bundleResourceIO for the one
// test of bundledModel; see native_edge.js. The asset table points at the real fixture files,
// so the bytes that reach load() are the real shards and label bank; load(), the model and
// TF.js are real.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const {BioClipInputError, BioClipLoadError, load} = require('react-bio-clip');
const {loadFromDirectory, readExportDirectory} = require('react-bio-clip/node');
const h = require('./helpers');
const {assets, mocks} = require('./native_edge');

const {bundledAssetBytes, bundledLabels, bundledLoadOptions, bundledModel, loadBundled} = require('react-bio-clip/native');

// Metro numbers assets from 1 in bundle order; any numbers do.
const LABEL_BANK_BIN = 7;
const WEIGHT_SHARD = 8;
const MISSING_FILE = 9;
const NAMES_BIN = 10;
const COMMON_NAMES_BIN = 11;

test('bundled export (react-bio-clip/native)', async (t) => {
  await h.useBackend('cpu');
  const exported = await readExportDirectory(h.SMALL_DIR);
  const modelJson = JSON.parse(fs.readFileSync(path.join(h.SMALL_DIR, 'tfjs/model.json'), 'utf8'));
  const labelsJson = JSON.parse(fs.readFileSync(path.join(h.SMALL_DIR, 'labels/label_bank.json'), 'utf8'));
  assets.files.set(LABEL_BANK_BIN, path.join(h.SMALL_DIR, 'labels/label_bank.bin'));
  assets.files.set(WEIGHT_SHARD, path.join(h.SMALL_DIR, 'tfjs', modelJson.weightsManifest[0].paths[0]));
  assets.files.set(MISSING_FILE, null);
  assets.files.set(NAMES_BIN, path.join(h.SMALL_DIR, 'labels/names.bin'));
  assets.files.set(COMMON_NAMES_BIN, path.join(h.SMALL_DIR, 'labels/common_names.bin'));
  const handed = [];
  mocks['@tensorflow/tfjs-react-native'].bundleResourceIO = (json, ids) => {
    handed.push([json, ids]);
    return exported.model;
  };
  const reference = await loadFromDirectory(h.SMALL_DIR);
  const baseline = tf.memory().numTensors;
  t.after(() => reference.dispose());
  const bundle = {modelJson, modelWeights: [WEIGHT_SHARD], manifest: exported.manifest, labelsJson, labelsBin: LABEL_BANK_BIN,
                  labelsNames: NAMES_BIN, labelsCommonNames: COMMON_NAMES_BIN};

  await t.test('an asset id for label_bank.bin is downloaded, then read as bytes: the real bank', async () => {
    const downloads = assets.downloads;
    const bytes = await bundledAssetBytes(LABEL_BANK_BIN);
    assert.strictEqual(assets.downloads, downloads + 1, 'downloadAsync() first: localUri is null before it');
    assert.ok(bytes instanceof Uint8Array);
    assert.deepStrictEqual(Buffer.from(bytes), fs.readFileSync(path.join(h.SMALL_DIR, 'labels/label_bank.bin')));
  });

  await t.test('loadBundled with asset ids answers exactly as loading the directory does', async () => {
    handed.length = 0;
    const reads = assets.reads;
    const bundled = await loadBundled(bundle);
    assert.strictEqual(assets.reads, reads + 4, 'the shard and the label bank\'s three files are all read as asset bytes');
    assert.strictEqual(handed.length, 0, 'no react-native-fs route (bundleResourceIO) for loadBundled');
    const square = h.decodeJpeg('square_a');
    const [a, b] = [await bundled.classify(square), await reference.classify(square)];
    assert.deepStrictEqual(Array.from(a.embedding), Array.from(b.embedding));
    assert.deepStrictEqual(a.species.map((s) => [s.taxon, s.probability, s.commonName]),
                           b.species.map((s) => [s.taxon, s.probability, s.commonName]));
    bundled.dispose();
    assert.strictEqual(tf.memory().numTensors, baseline);
  });

  await t.test('bundledLoadOptions: LoadOptions with the bank as bytes, for useBioClip(() => ...)', async () => {
    const options = await bundledLoadOptions(bundle);
    assert.ok(options.labels.bin instanceof Uint8Array);
    assert.strictEqual(options.labels.json, labelsJson);
    assert.strictEqual(options.manifest, exported.manifest);
    // Label bank bytes pass through untouched: only the weight shard is an asset lookup.
    const downloads = assets.downloads;
    const withBytes = await bundledLoadOptions({...bundle, labelsBin: exported.labels.bin, labelsNames: exported.labels.names,
                                                labelsCommonNames: undefined});
    assert.strictEqual(withBytes.labels.bin, exported.labels.bin);
    assert.strictEqual(withBytes.labels.names, exported.labels.names);
    assert.strictEqual(withBytes.labels.commonNames, undefined, 'common names are optional');
    assert.strictEqual(assets.downloads, downloads + 1);
  });

  await t.test('bundledLabels: the bank alone, as bytes, for loadTflite (no weight shard read)', async () => {
    const [reads, downloads] = [assets.reads, assets.downloads];
    const labels = await bundledLabels(bundle);
    assert.strictEqual(assets.reads, reads + 3, 'label_bank.bin, names.bin and common_names.bin, and nothing else');
    assert.strictEqual(assets.downloads, downloads + 3);
    const viaOptions = (await bundledLoadOptions(bundle)).labels;
    for (const part of ['bin', 'names', 'commonNames']) {
      assert.ok(labels[part] instanceof Uint8Array, part);
      assert.deepStrictEqual(Array.from(labels[part]), Array.from(viaOptions[part]), part);
    }
    assert.strictEqual(labels.json, labelsJson);
    await assert.rejects(bundledLabels({...bundle, labelsNames: undefined}),
                         (e) => e instanceof BioClipInputError && /bundledLabels: labelsNames is missing/.test(e.message));
    await assert.rejects(bundledLoadOptions(null),
                         (e) => e instanceof BioClipInputError && /bundledLoadOptions: pass/.test(e.message));
  });

  await t.test('an asset id where bytes belong: BioClipInputError naming the Metro asset id, not a zero bank', async () => {
    // The old README flow: labels.bin = require('.../label_bank.bin') straight into load().
    await assert.rejects(
        load({model: exported.model, manifest: exported.manifest, labels: {json: labelsJson, bin: LABEL_BANK_BIN}}),
        (error) => error instanceof BioClipInputError && error.code === 'BAD_INPUT' &&
            /labels\.bin is the number 7/.test(error.message) && /Metro asset id/.test(error.message) &&
            /loadBundled/.test(error.message));
    await assert.rejects(
        load({model: exported.model, manifest: exported.manifest, labels: {json: 3, bin: exported.labels.bin}}),
        (error) => error instanceof BioClipInputError && /labels\.json is the number 3/.test(error.message));
    assert.strictEqual(tf.memory().numTensors, baseline);
  });

  await t.test('bundledModel is tfjs-react-native\'s bundleResourceIO with the asset ids', async () => {
    handed.length = 0;
    const handler = bundledModel(modelJson, [WEIGHT_SHARD]);
    assert.deepStrictEqual(handed, [[modelJson, [WEIGHT_SHARD]]]);
    assert.strictEqual(handler, exported.model);
  });

  await t.test('bad bundle parts are typed errors', async () => {
    await assert.rejects(loadBundled({...bundle, modelWeights: [WEIGHT_SHARD, WEIGHT_SHARD]}),
                         (e) => e instanceof BioClipInputError && /names 1 weight shard/.test(e.message));
    assert.throws(() => bundledModel(modelJson, ['./group1-shard1of1.bin']),
                  (e) => e instanceof BioClipInputError && /asset ids/.test(e.message));
    assert.throws(() => bundledModel(42, [WEIGHT_SHARD]), (e) => e instanceof BioClipInputError && /model\.json/.test(e.message));
    await assert.rejects(bundledAssetBytes('label_bank.bin'), (e) => e instanceof BioClipInputError);
    await assert.rejects(bundledAssetBytes(12345), (e) => e instanceof BioClipLoadError && /12345/.test(e.message));
    await assert.rejects(bundledAssetBytes(MISSING_FILE), (e) => e instanceof BioClipLoadError && /no local file/.test(e.message));
    await assert.rejects(bundledLoadOptions(null), (e) => e instanceof BioClipInputError);
    await assert.rejects(bundledLoadOptions({...bundle, labelsNames: undefined}), (e) => e instanceof BioClipInputError && /names\.bin/.test(e.message));
    assert.strictEqual(tf.memory().numTensors, baseline);
  });
});
