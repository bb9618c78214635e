'use strict';
// On-device few-shot (SimpleShot): prototype = mean of L2-normalized embeddings; with two or
// more user taxa, centred on the mean of all support photos and renormalized.
const test = require('node:test');
const assert = require('node:assert');
const tf = require('@tensorflow/tfjs');
const {BioClipMismatchError, BioClipFormatError} = require('react-bio-clip');
const {loadFromDirectory} = require('react-bio-clip/node');
const h = require('./helpers');

const close = (a, b, what, tol = 1e-5) => assert.ok(Math.abs(a - b) < tol, `${what}: ${a} != ${b}`);

test('few-shot taxa', async (t) => {
  await h.useBackend('cpu');
  const bioClip = await loadFromDirectory(h.SMALL_DIR);
  const [a, b, c] = ['square_a', 'square_b', 'square_c'].map(h.decodeJpeg);
  const [ea, eb, ec] = [a, b, c].map((img) => bioClip.embed(img));
  const baseline = tf.memory().numTensors;
  const zeroShot = await bioClip.classify(a);
  assert.deepStrictEqual(zeroShot.userTaxa, []);

  await t.test('one taxon: plain cosine to the normalized mean', async () => {
    await bioClip.addTaxon('Garden A', [a], {commonName: 'the A thing'});
    const r = await bioClip.classify(a);
    assert.strictEqual(r.userTaxa.length, 1);
    close(r.userTaxa[0].similarity, 1, 'a photo vs its own one-photo prototype');
    close(r.userTaxa[0].probability, 1, 'one taxon');
    assert.strictEqual(r.userTaxa[0].commonName, 'the A thing');
    const rb = await bioClip.classify(b);
    close(rb.userTaxa[0].similarity, h.cosine(ea, eb), 'uncentred cosine', 1e-4);
  });

  await t.test('two taxa: centred (two points -> similarities +1 and -1)', async () => {
    await bioClip.addTaxon('Garden B', [b]);
    const r = await bioClip.classify(a);
    assert.deepStrictEqual(r.userTaxa.map((u) => u.name), ['Garden A', 'Garden B']);
    close(r.userTaxa[0].similarity, 1, 'A', 1e-4);
    close(r.userTaxa[1].similarity, -1, 'B', 1e-4);
    // softmax(logit_scale * [1, -1]); logit_scale is 100 in the fixture bank.
    close(r.userTaxa[0].probability, 1 / (1 + Math.exp(-200)), 'P(A)');
    // The zero-shot part of the answer is untouched by user taxa.
    assert.deepStrictEqual(r.species.map((s) => [s.index, s.probability]), zeroShot.species.map((s) => [s.index, s.probability]));
  });

  await t.test('prototype means, merging and the JSON round trip', async () => {
    await bioClip.addTaxon('Garden C', [b, c]);
    await bioClip.addTaxon('Garden C', [a]);  // adding photos to an existing taxon
    const json = bioClip.exportPrototypes();
    const taxonC = json.taxa.find((x) => x.name === 'Garden C');
    assert.strictEqual(taxonC.count, 3);
    taxonC.mean_embedding.forEach((v, i) => close(v, (ea[i] + eb[i] + ec[i]) / 3, `mean[${i}]`, 1e-6));
    assert.strictEqual(json.embed_dim, bioClip.embedDim);
    assert.match(json.model_sha256, /^[0-9a-f]{64}$/);

    const before = await bioClip.classify(c);
    const fresh = await loadFromDirectory(h.SMALL_DIR);
    fresh.importPrototypes(JSON.stringify(json));
    assert.deepStrictEqual(fresh.userTaxa, ['Garden A', 'Garden B', 'Garden C']);
    const after = await fresh.classify(c);
    assert.deepStrictEqual(after.userTaxa.map((u) => u.name), before.userTaxa.map((u) => u.name));
    after.userTaxa.forEach((u, i) => close(u.similarity, before.userTaxa[i].similarity, u.name));
    // Importing again merges counts; replace starts over.
    fresh.importPrototypes(json);
    assert.strictEqual(fresh.exportPrototypes().taxa.find((x) => x.name === 'Garden C').count, 6);
    fresh.importPrototypes({...json, taxa: json.taxa.slice(0, 1)}, {replace: true});
    assert.deepStrictEqual(fresh.userTaxa, ['Garden A']);

    assert.throws(() => fresh.importPrototypes({...json, embed_dim: 7}), BioClipMismatchError);
    assert.throws(() => fresh.importPrototypes({...json, model_sha256: 'f'.repeat(64)}), BioClipMismatchError);
    assert.throws(() => fresh.importPrototypes('{not json'), BioClipFormatError);
    assert.throws(() => fresh.importPrototypes({format: 'something else'}), BioClipFormatError);
    fresh.dispose();
  });

  await t.test('removing taxa frees their tensors', () => {
    for (const name of bioClip.userTaxa) assert.ok(bioClip.removeTaxon(name));
    assert.strictEqual(bioClip.removeTaxon('nope'), false);
    assert.strictEqual(tf.memory().numTensors, baseline);
  });

  bioClip.dispose();
  assert.strictEqual(tf.memory().numTensors, 0);
});
