'use strict';
// "None of these": the similarity floors. A photo that is like none of the candidates (the
// species allowed, the user's taxa) gets abstained / userBest null, not a probability of 1 that
// only says it is more like one candidate than the others. Embeddings are made by hand here, so
// every cosine is known exactly.
const test = require('node:test');
const assert = require('node:assert');
const tf = require('@tensorflow/tfjs');
const {load, DEFAULT_SPECIES_SIMILARITY_FLOOR, DEFAULT_USER_SIMILARITY_FLOOR} = require('react-bio-clip');
const {loadFromDirectory, readExportDirectory} = require('react-bio-clip/node');
const h = require('./helpers');

const SPECIES = [
  [['Animalia', 'Chordata', 'Aves', 'Passeriformes', 'Turdidae', 'Turdus', 'migratorius'], 'American robin', 3],
  [['Animalia', 'Chordata', 'Aves', 'Passeriformes', 'Corvidae', 'Corvus', 'corax'], 'Common raven', 2],
  [['Animalia', 'Chordata', 'Mammalia', 'Carnivora', 'Canidae', 'Canis', 'lupus'], 'Gray wolf', 1],
];
const close = (actual, expected, what, tol = 1e-5) => assert.ok(Math.abs(actual - expected) < tol, `${what}: ${actual} != ${expected}`);

/** a * e_i + b * e_j, float32 [D]. */
function vector(d, parts) {
  const v = new Float32Array(d);
  for (const [axis, value] of parts) v[axis] = value;
  return v;
}

test('the defaults are cosines on BioCLIP\'s scale: image-text far below image-image', () => {
  assert.ok(DEFAULT_SPECIES_SIMILARITY_FLOOR > 0 && DEFAULT_SPECIES_SIMILARITY_FLOOR < DEFAULT_USER_SIMILARITY_FLOOR);
  assert.ok(DEFAULT_USER_SIMILARITY_FLOOR < 1);
});

test('the species bank abstains below speciesSimilarityFloor', async (t) => {
  await h.useBackend('cpu');
  const {model} = await readExportDirectory(h.SMALL_DIR);
  const d = h.fixtureManifest().embed_dim;
  const bank = h.handBank(SPECIES, d);  // query e0: cosines 0.5 + ln(w)/10
  const bioClip = await load({model, labels: bank.labels, manifest: bank.manifest});
  const robinCosine = 0.5 + Math.log(3) / 10;
  const like = vector(d, [[0, 1]]);
  const unlike = vector(d, [[d - 1, 1]]);  // orthogonal to every species row: cosine 0

  await t.test('a photo like a species: answered, with its cosine', async () => {
    const r = await bioClip.classifyEmbedding(like, {threshold: 0.4});
    close(r.similarity, robinCosine, 'similarity');
    assert.strictEqual(r.abstained, false);
    assert.strictEqual(r.best.name, 'Turdus migratorius');  // p = 3/6
  });

  await t.test('a photo like none: abstained, best null, although one species has p = 1', async () => {
    const all = await bioClip.classifyEmbedding(unlike);
    close(all.similarity, 0, 'similarity');
    assert.strictEqual(all.abstained, true);
    assert.strictEqual(all.best, null);
    const one = await bioClip.classifyEmbedding(unlike, {restrictTo: 'Canis lupus'});
    close(one.species[0].probability, 1, 'the only allowed species');
    assert.strictEqual(one.abstained, true);
    assert.strictEqual(one.best, null);
    // The floor off: the old answer, p = 1 for whatever is allowed.
    const off = await bioClip.classifyEmbedding(unlike, {restrictTo: 'Canis lupus', speciesSimilarityFloor: -1});
    assert.strictEqual(off.abstained, false);
    assert.strictEqual(off.best.name, 'Canis lupus');
  });

  await t.test('the floor compares with the best allowed species, on either side of it', async () => {
    assert.strictEqual((await bioClip.classifyEmbedding(like, {speciesSimilarityFloor: robinCosine + 0.01})).abstained, true);
    assert.strictEqual((await bioClip.classifyEmbedding(like, {speciesSimilarityFloor: robinCosine - 0.01})).abstained, false);
    const wolf = await bioClip.classifyEmbedding(like, {restrictTo: 'Mammalia'});
    close(wolf.similarity, 0.5, 'the best allowed species is the wolf');
  });
  bioClip.dispose();
});

test('few-shot abstains below userSimilarityFloor', async (t) => {
  await h.useBackend('cpu');
  const bioClip = await loadFromDirectory(h.SMALL_DIR);
  const d = bioClip.embedDim;
  const prototypes = (taxa) => ({
    format: 'react-bio-clip/prototypes', format_version: 1, embed_dim: d, model_sha256: null,
    taxa: taxa.map(([name, mean]) => ({name, common_name: '', count: 1, mean_embedding: Array.from(mean)})),
  });
  const at = (cosine) => vector(d, [[0, cosine], [1, Math.sqrt(1 - cosine * cosine)]]);  // cosine to e0

  await t.test('one taxon: p = 1 when the photo is like it, 0 and userBest null ("none of these") when not', async () => {
    bioClip.importPrototypes(prototypes([['my robin', vector(d, [[0, 1]])]]), {replace: true});
    const near = await bioClip.classifyEmbedding(at(0.9));
    close(near.userTaxa[0].cosine, 0.9, 'cosine');
    close(near.userTaxa[0].probability, 1, 'p');
    assert.strictEqual(near.userBest.name, 'my robin');
    const far = await bioClip.classifyEmbedding(at(0.3));
    close(far.userTaxa[0].cosine, 0.3, 'cosine');
    assert.strictEqual(far.userTaxa[0].probability, 0);
    assert.strictEqual(far.userBest, null);
    // The floor off: the old answer, p = 1 for any photo.
    const off = await bioClip.classifyEmbedding(at(0.3), {userSimilarityFloor: -1});
    close(off.userTaxa[0].probability, 1, 'p without a floor');
    assert.strictEqual(off.userBest.name, 'my robin');
    // Just either side of the default.
    assert.strictEqual((await bioClip.classifyEmbedding(at(DEFAULT_USER_SIMILARITY_FLOOR + 0.01))).userBest.name, 'my robin');
    assert.strictEqual((await bioClip.classifyEmbedding(at(DEFAULT_USER_SIMILARITY_FLOOR - 0.01))).userBest, null);
  });

  await t.test('two taxa: the softmax runs over the taxa that reach the floor only', async () => {
    bioClip.importPrototypes(prototypes([['A', vector(d, [[0, 1]])], ['B', vector(d, [[2, 1]])]]), {replace: true});
    const onlyA = await bioClip.classifyEmbedding(vector(d, [[0, 0.8], [1, 0.6]]));
    const byName = Object.fromEntries(onlyA.userTaxa.map((u) => [u.name, u]));
    close(byName.A.cosine, 0.8, 'A');
    close(byName.B.cosine, 0, 'B');
    close(byName.A.probability, 1, 'P(A)');
    assert.strictEqual(byName.B.probability, 0);
    assert.strictEqual(onlyA.userBest.name, 'A');
    const both = await bioClip.classifyEmbedding(vector(d, [[0, 0.75], [2, 0.65], [1, Math.sqrt(1 - 0.75 ** 2 - 0.65 ** 2)]]));
    const sum = both.userTaxa.reduce((a, u) => a + u.probability, 0);
    close(sum, 1, 'both reach the floor: probabilities sum to 1');
    assert.strictEqual(both.userBest.name, 'A');
    assert.ok(both.userTaxa.every((u) => u.probability > 0));
  });

  await t.test('real photos: a photo of a taxon reaches the floor of its own prototype', async () => {
    bioClip.importPrototypes(prototypes([]), {replace: true});
    const a = h.decodeJpeg('square_a');
    await bioClip.addTaxon('A', [a]);
    const r = await bioClip.classify(a);
    close(r.userTaxa[0].cosine, 1, 'a photo vs its own one-photo prototype', 1e-4);
    assert.strictEqual(r.userBest.name, 'A');
    const impossible = await bioClip.classify(a, {userSimilarityFloor: 1});
    assert.ok(impossible.userBest === null || impossible.userTaxa[0].cosine >= 1);
  });
  bioClip.dispose();
  assert.strictEqual(tf.memory().numTensors, 0);
});
