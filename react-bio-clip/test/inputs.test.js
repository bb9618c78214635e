'use strict';
// Inputs that used to be accepted without a word: float32 photos scaled to 0..1, NaN/Infinity,
// misspelt option names. Each is now a BioClipInputError that says what was wrong, on every
// public function concerned, and none of the rejections leaks a tensor.
const test = require('node:test');
const assert = require('node:assert');
const React = require('react');
const TestRenderer = require('react-test-renderer');
const tf = require('@tensorflow/tfjs');
const {load, BioClipInputError, BioClipFormatError} = require('react-bio-clip');
const {loadFromDirectory, readExportDirectory} = require('react-bio-clip/node');
const {useBioClip} = require('react-bio-clip/react');
const h = require('./helpers');

global.IS_REACT_ACT_ENVIRONMENT = true;

function inputError(pattern) {
  return (error) => {
    assert.ok(error instanceof BioClipInputError, `expected BioClipInputError, got ${error.constructor.name}: ${error.message}`);
    assert.strictEqual(error.code, 'BAD_INPUT');
    assert.match(error.message, pattern);
    return true;
  };
}

for (const backend of h.BACKENDS) {
  test(`image values on ${backend}`, async (t) => {
    await h.useBackend(backend);
    const bioClip = await loadFromDirectory(h.SMALL_DIR);
    const photo = h.decodeJpeg('square_a');
    const [H, W] = [photo.height, photo.width];
    const pixels = tf.tensor3d(photo.data, [H, W, 3], 'int32');
    const scaled = tf.tidy(() => tf.div(tf.cast(pixels, 'float32'), 255));
    const baseline = tf.memory().numTensors;

    await t.test('a float32 photo scaled to 0..1 is refused, with the hint, by embed, classify and addTaxon', async () => {
      const unitRange = /lies in 0\.\.1 .*must be 0\.\.255: multiply by 255.*allowUnitRange/;
      assert.throws(() => bioClip.embed(scaled), inputError(unitRange));
      await assert.rejects(bioClip.classify(scaled), inputError(/^classify: .*lies in 0\.\.1/));
      await assert.rejects(bioClip.addTaxon('scaled', [photo, scaled]), inputError(/addTaxon\("scaled"\) photo 1: .*lies in 0\.\.1/));
      assert.deepStrictEqual(bioClip.userTaxa, [], 'a refused photo must not add half a taxon');
      // At any size (the check looks at the squashed model input), and as RGBA.
      const big = tf.tidy(() => tf.image.resizeBilinear(scaled, [3 * H, 2 * W]));
      const rgba = tf.tidy(() => tf.concat([scaled, tf.onesLike(scaled).slice([0, 0, 0], [-1, -1, 1])], 2));
      assert.throws(() => bioClip.embed(big), inputError(unitRange));
      assert.throws(() => bioClip.embed(rgba), inputError(unitRange));
      tf.dispose([big, rgba]);
      assert.strictEqual(tf.memory().numTensors, baseline);
    });

    await t.test('allowUnitRange lets such an image through; 0..255 floats and an all-black float frame pass', async () => {
      const dark = bioClip.embed(scaled, {allowUnitRange: true});
      assert.strictEqual(dark.length, bioClip.embedDim);
      assert.ok((await bioClip.classify(scaled, {allowUnitRange: true})).species.length > 0);
      // The check must not change the answer for a good float32 photo: same as the int32 tensor.
      const asFloat = tf.cast(pixels, 'float32');
      assert.deepStrictEqual(Array.from(bioClip.embed(asFloat)), Array.from(bioClip.embed(pixels)));
      const black = tf.zeros([H, W, 3]);
      assert.strictEqual(bioClip.embed(black).length, bioClip.embedDim);
      tf.dispose([asFloat, black]);
      assert.strictEqual(tf.memory().numTensors, baseline);
    });

    await t.test('NaN or Infinity anywhere in a float32 image is refused', async () => {
      const values = new Float32Array(H * W * 3).fill(100);
      for (const [bad, where] of [[NaN, 5], [Infinity, H * W * 3 - 1], [-Infinity, 1000]]) {
        values[where] = bad;
        const image = tf.tensor3d(values, [H, W, 3]);
        assert.throws(() => bioClip.embed(image), inputError(/NaN or Infinity/));
        await assert.rejects(bioClip.classify(image, {allowUnitRange: true}), inputError(/NaN or Infinity/));
        await assert.rejects(bioClip.addTaxon('nan', [image]), inputError(/NaN or Infinity/));
        image.dispose();
        values[where] = 100;
      }
      const embedding = bioClip.embed(photo);
      embedding[3] = NaN;
      await assert.rejects(bioClip.classifyEmbedding(embedding), inputError(/NaN at index 3/));
      const json = {format: 'react-bio-clip/prototypes', format_version: 1, embed_dim: bioClip.embedDim, model_sha256: null,
        taxa: [{name: 'x', common_name: '', count: 1, mean_embedding: Array.from(embedding)}]};
      assert.throws(() => bioClip.importPrototypes(json), BioClipFormatError);
      assert.strictEqual(tf.memory().numTensors, baseline);
    });

    tf.dispose([pixels, scaled]);
    bioClip.dispose();
    assert.strictEqual(tf.memory().numTensors, 0);
  });
}

test('unknown option names are refused by every public function that takes options', async (t) => {
  await h.useBackend('cpu');
  const pieces = await readExportDirectory(h.SMALL_DIR);
  const bioClip = await load(pieces);
  const photo = h.decodeJpeg('square_a');
  const embedding = bioClip.embed(photo);
  await bioClip.classify(photo, {restrictTo: 'Animalia'});  // its mask stays cached on the device: not a leak
  const baseline = tf.memory().numTensors;
  const misspelt = (wrong, right) => new RegExp(`unknown option "${wrong}" \\(did you mean "${right}"\\?\\); the options are .*${right}`);

  await t.test('load and loadFromDirectory', async () => {
    await assert.rejects(load({...pieces, skipWarmUp: true}), inputError(/^load: unknown option "skipWarmUp" \(did you mean "skipWarmup"\?\)/));
    await assert.rejects(load({...pieces, resise: 'area'}), inputError(misspelt('resise', 'resize')));
    await assert.rejects(loadFromDirectory(h.SMALL_DIR, {resize: 'area', modle: 'x'}), inputError(/^loadFromDirectory: unknown option "modle"/));
    // loadFromDirectory reads the model itself: passing one is a mistake, not an override.
    await assert.rejects(loadFromDirectory(h.SMALL_DIR, {model: 'other/model.json'}), inputError(/unknown option "model"/));
  });

  await t.test('embed, classify, classifyEmbedding, addTaxon, importPrototypes', async () => {
    assert.throws(() => bioClip.embed(photo, {allowUnitrange: true}), inputError(misspelt('allowUnitrange', 'allowUnitRange')));
    await assert.rejects(bioClip.classify(photo, {topk: 3}), inputError(misspelt('topk', 'topK')));
    await assert.rejects(bioClip.classify(photo, {restrict: ['Aves']}), inputError(/^classify: unknown option "restrict" \(did you mean "restrictTo"\?\)/));
    await assert.rejects(bioClip.classify(photo, {topK: 3, treshold: 0.2, foo: 1}), inputError(/unknown options "treshold" \(did you mean "threshold"\?\), "foo";/));
    await assert.rejects(bioClip.classify(photo, 3), inputError(/options must be an object, got number/));
    await assert.rejects(bioClip.classifyEmbedding(embedding, {speciesFloor: 0.1}), inputError(/^classifyEmbedding: unknown option "speciesFloor"/));
    // An image option means nothing for an embedding.
    await assert.rejects(bioClip.classifyEmbedding(embedding, {allowUnitRange: true}), inputError(/unknown option "allowUnitRange"/));
    await assert.rejects(bioClip.addTaxon('robin', [photo], {common_name: 'Robin'}), inputError(misspelt('common_name', 'commonName')));
    assert.deepStrictEqual(bioClip.userTaxa, []);
    assert.throws(() => bioClip.importPrototypes(bioClip.exportPrototypes(), {replce: true}), inputError(misspelt('replce', 'replace')));
    // The right names still work.
    const r = await bioClip.classify(photo, {topK: 3, ranks: ['genus'], threshold: 0.2, restrictTo: 'Animalia',
                                             speciesSimilarityFloor: -1, userSimilarityFloor: 0.5, allowUnitRange: false});
    assert.strictEqual(r.species.length, 3);
    assert.strictEqual(tf.memory().numTensors, baseline);
  });

  await t.test('the floors must be cosines', async () => {
    await assert.rejects(bioClip.classify(photo, {speciesSimilarityFloor: 20}), inputError(/speciesSimilarityFloor must be a cosine in \[-1, 1\]/));
    await assert.rejects(bioClip.classifyEmbedding(embedding, {userSimilarityFloor: '0.5'}), inputError(/userSimilarityFloor must be a cosine/));
  });

  await t.test('useBioClip reports a misspelt option as status "error"', async () => {
    const states = [];
    function Probe({options}) {
      states.push(useBioClip(options));
      return null;
    }
    let renderer;
    await TestRenderer.act(async () => {
      renderer = TestRenderer.create(React.createElement(Probe, {options: {...pieces, skipwarmup: true}}));
    });
    const last = states[states.length - 1];
    assert.strictEqual(last.status, 'error');
    assert.ok(last.error instanceof BioClipInputError);
    assert.match(last.error.message, /^useBioClip: unknown option "skipwarmup" \(did you mean "skipWarmup"\?\)/);
    await TestRenderer.act(async () => renderer.unmount());
    assert.strictEqual(tf.memory().numTensors, baseline);
  });

  bioClip.dispose();
});
