'use strict';
// Parity with the Python pipeline: the fixture export (made by scripts/make_fixture.py with the
// project's export code) must give, in TF.js, the embeddings and top-5 species that the Keras
// student and the dequantized device label bank give in Python for the same photos.
const test = require('node:test');
const assert = require('node:assert');
const tf = require('@tensorflow/tfjs');
const {loadFromDirectory} = require('react-bio-clip/node');
const h = require('./helpers');

const COSINE_TOLERANCE = 1e-4;  // the package's parity promise for the same JPEG bytes
const exp = h.expected();
const squares = exp.photos.filter((p) => p.embedding);

for (const backend of h.BACKENDS) {
  test(`parity with Python on the ${backend} backend`, async (t) => {
    await h.useBackend(backend);
    const bioClip = await loadFromDirectory(h.EXPORT_DIR);
    assert.strictEqual(bioClip.resolution, exp.resolution);
    assert.strictEqual(bioClip.embedDim, exp.embed_dim);

    await t.test('same pixels (Python\'s own decode): embeddings match to float rounding, top-5 identical', async () => {
      const photo = squares.find((p) => p.name === 'square_a');
      const pixels = h.readRgb('square_a.rgb', photo.width, photo.height);
      const embedding = bioClip.embed(pixels);
      assert.ok(1 - h.cosine(embedding, photo.embedding) < 1e-6, `cosine ${h.cosine(embedding, photo.embedding)}`);
      const maxDiff = Math.max(...Array.from(embedding, (v, i) => Math.abs(v - photo.embedding[i])));
      assert.ok(maxDiff < 1e-4, `max abs embedding difference ${maxDiff}`);
      const result = await bioClip.classify(pixels, {topK: 5});
      assert.deepStrictEqual(result.species.map((s) => s.index), photo.top5_species);
      // The probabilities are the softmax of Python's logits.
      const max = Math.max(...photo.logits);
      const z = photo.logits.reduce((acc, l) => acc + Math.exp(l - max), 0);
      result.species.forEach((s) => assert.ok(Math.abs(s.probability - Math.exp(photo.logits[s.index] - max) / z) < 1e-4));
    });

    await t.test('same JPEG bytes (decoded by jpeg-js): within 1e-4 cosine, top-5 equal up to near-ties', async () => {
      for (const photo of squares) {
        const decoded = h.decodeJpeg(photo.name);
        const embedding = bioClip.embed(decoded);
        const cos = h.cosine(embedding, photo.embedding);
        assert.ok(1 - cos <= COSINE_TOLERANCE, `${photo.name}: cosine ${cos}`);
        const result = await bioClip.classify(decoded, {topK: 5});
        // Position by position, the species JS ranks there has (by Python's logits) the logit
        // Python ranks there; a swap is only allowed between species within 1 logit (a cosine
        // difference of 0.01 at logit_scale 100, well above the decode noise).
        result.species.forEach((s, position) => {
          const gap = Math.abs(photo.logits[s.index] - photo.top5_logits[position]);
          assert.ok(gap < 1.0, `${photo.name} position ${position}: JS ranks species ${s.index} ` +
                    `(Python logit ${photo.logits[s.index]}), Python ranks ${photo.top5_species[position]} (${photo.top5_logits[position]})`);
        });
        assert.strictEqual(result.species[0].index, photo.top5_species[0], `${photo.name}: top-1 differs`);
      }
    });

    bioClip.dispose();
    assert.strictEqual(tf.memory().numTensors, 0, 'dispose() must free every tensor');
  });
}
