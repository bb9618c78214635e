'use strict';
// react-bio-clip/tflite against Python: the fixture (scripts/make_tflite_fixture.py, the
// project's export stage with its TFLite int8 model kept) holds Python's tf.lite.Interpreter
// embeddings and top-5 species for each photo. Here the same model_int8.tflite runs through
// loadTflite -> TfliteEmbedder -> the mock of react-native-fast-tflite's native module
// (test/fast_tflite_mock.js: a REAL TFLite runtime, @litertjs/core, behind fast-tflite's
// TensorflowModel interface; only the native module is mocked). Scoring, hierarchy, best,
// restrictTo and few-shot are BioClipModel's, shared with the TF.js path: checked by running
// both paths on the same embedding.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');
const {loadTflite, TfliteEmbedder} = require('react-bio-clip/tflite');
const {BioClipMismatchError, BioClipFormatError, BioClipLoadError} = require('react-bio-clip');
const {loadFromDirectory, readLabelsDirectory} = require('react-bio-clip/node');
const h = require('./helpers');
const {loadTensorflowModel} = require('./fast_tflite_mock');

const FIXTURE = path.join(__dirname, 'fixtures_tflite');
const EXPORT = path.join(FIXTURE, 'export');
const exp = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'expected.json'), 'utf8'));
const manifest = JSON.parse(fs.readFileSync(path.join(EXPORT, 'manifest.json'), 'utf8'));
const modelBytes = fs.readFileSync(path.join(EXPORT, 'tflite', 'model_int8.tflite'));

function photo(p) {
  return {data: new Uint8Array(fs.readFileSync(path.join(FIXTURE, 'photos', `${p.name}.rgb`))), width: p.width, height: p.height};
}

async function tfliteClip(options = {}) {
  const model = await loadTensorflowModel(modelBytes);
  const labels = await readLabelsDirectory(path.join(EXPORT, 'labels'), manifest);
  return {model, clip: await loadTflite({model, labels, manifest, ...options})};
}

for (const backend of h.BACKENDS) {
  test(`TFLite path matches Python's tf.lite.Interpreter (scoring on ${backend})`, async (t) => {
    await h.useBackend(backend);
    const {model, clip} = await tfliteClip();
    assert.strictEqual(clip.resolution, exp.resolution);
    assert.strictEqual(clip.embedDim, exp.embed_dim);

    await t.test('R x R photos: embeddings match (cosine), top-1 identical, top-5 logits close', async () => {
      for (const p of exp.photos.filter((q) => q.width === exp.resolution && q.height === exp.resolution)) {
        const embedding = clip.embed(photo(p));
        const cos = h.cosine(embedding, p.embedding);
        // Same int8 model, two builds of TFLite's int8 kernels: equal up to float rounding.
        assert.ok(cos > 0.99999, `${p.name}: cosine ${cos} to Python's TFLite embedding`);
        const result = await clip.classify(photo(p), {topK: 5});
        assert.strictEqual(result.species[0].index, p.top5_species[0], `${p.name}: top-1`);
        // The probabilities are the softmax of Python's logits (over its top 5 they sum below 1).
        const logits = p.top5_logits;
        result.species.forEach((s, j) => {
          if (s.index === p.top5_species[j]) {
            assert.ok(Math.abs(Math.log(s.probability / result.species[0].probability) - (logits[j] - logits[0])) < 0.05,
                      `${p.name}: species ${s.index} log-odds vs Python's logits`);
          }
        });
      }
    });

    await t.test('a larger photo: squashed by the package (squashResize), then TFLite: close to Python', async () => {
      const p = exp.photos.find((q) => q.width !== exp.resolution);
      assert.ok(p, 'the fixture has a photo that needs the squash resize');
      const cos = h.cosine(clip.embed(photo(p)), p.embedding);
      // Python resized with tf.image.resize (bicubic, antialias); squashResize reproduces it to
      // about 1e-3 per pixel, which the int8 model turns into a little more.
      assert.ok(cos > 0.999, `cosine ${cos}`);
      assert.strictEqual((await clip.classify(photo(p))).species[0].index, p.top5_species[0]);
    });

    await t.test('the scoring is the TF.js path\'s: same answers from the same embedding', async () => {
      const tfjs = await loadFromDirectory(EXPORT);
      try {
        const embedding = clip.embed(photo(exp.photos[0]));
        const options = {topK: 3, threshold: 0.2, restrictTo: ['Aves', 'Mammalia']};
        const a = await clip.classifyEmbedding(embedding, options);
        const b = await tfjs.classifyEmbedding(embedding, options);
        assert.deepStrictEqual(a.species.map((s) => [s.taxon, s.lineage]), b.species.map((s) => [s.taxon, s.lineage]));
        assert.deepStrictEqual(Object.keys(a.ranks), Object.keys(b.ranks));
        assert.deepStrictEqual(a.best && a.best.taxon, b.best && b.best.taxon);
        for (const s of a.species) {
          const cls = s.lineage.find((l) => l.rank === 'class').name;
          assert.ok(['Aves', 'Mammalia'].includes(cls), `restrictTo let ${s.taxon} (class ${cls}) through`);
        }
        // The TF.js graph and the int8 TFLite model are different models of the same student.
        assert.ok(h.cosine(embedding, tfjs.embed(photo(exp.photos[0]))) > 0.95);
      } finally {
        tfjs.dispose();
      }
    });

    await t.test('few-shot: a taxon added from TFLite embeddings wins on its own photo', async () => {
      const [a, b] = exp.photos;
      await clip.addTaxon('garden gnome', [photo(a)]);
      await clip.addTaxon('garden frog', [photo(b)]);
      const result = await clip.classify(photo(a), {userSimilarityFloor: -1});
      assert.strictEqual(result.userBest.name, 'garden gnome');
      assert.ok(result.userTaxa.find((u) => u.name === 'garden gnome').cosine > 0.999);
      assert.ok(clip.exportPrototypes().model_sha256 === undefined ||
                clip.exportPrototypes().model_sha256 === manifest.files['tflite/model_int8.tflite'].sha256);
    });

    clip.dispose();
    assert.ok(model.disposed, 'dispose() frees the native model');
  });
}

test('TfliteEmbedder refuses a model whose input or output does not fit the manifest', async () => {
  const model = await loadTensorflowModel(modelBytes);
  try {
    assert.throws(() => new TfliteEmbedder(model, exp.resolution + 16, exp.embed_dim),
                  (e) => e instanceof BioClipMismatchError && /input is float32 \[1,48,48,3\].*\[1, 64, 64, 3\]/.test(e.message));
    assert.throws(() => new TfliteEmbedder(model, exp.resolution, exp.embed_dim * 2),
                  (e) => e instanceof BioClipMismatchError && /output is float32 \[1,32\].*\[1, 64\]/.test(e.message));
    const labels = await readLabelsDirectory(path.join(EXPORT, 'labels'), manifest);
    const wrong = {...manifest, resolution: exp.resolution * 2};
    await assert.rejects(loadTflite({model, labels, manifest: wrong}), BioClipMismatchError);
    assert.ok(model.disposed, 'a failed load frees the model it was given');
  } finally {
    model.dispose();
  }
});

test('loadTflite: clear errors without a manifest, and without the optional peer', async () => {
  const labels = await readLabelsDirectory(path.join(EXPORT, 'labels'), manifest);
  await assert.rejects(loadTflite({model: 1, labels}), (e) => e instanceof BioClipFormatError && /manifest/.test(e.message));
  await assert.rejects(loadTflite({model: 1, labels, manifest, topK: 3}), /topK/);
  // react-native-fast-tflite is an optional peer, not installed here: a source needs it.
  await assert.rejects(loadTflite({model: {url: 'file:///x.tflite'}, labels, manifest}),
                       (e) => e instanceof BioClipLoadError && /react-native-fast-tflite/.test(e.message));
});
