'use strict';
// Parity with the Python pipeline: the fixture export (made by scripts/make_fixture.py with the
// project's export code) must give, in TF.js, the embeddings and top-5 species that the Keras
// student and the dequantized device label bank give in Python for the same photos. The
// fixture's student is the real MobileNetV3 (squeeze-excite, hard-swish, residuals) at the
// runlocal width and resolution, exported by bioclip_lite_tf.export.
const test = require('node:test');
const assert = require('node:assert');
const tf = require('@tensorflow/tfjs');
const {loadFromDirectory} = require('react-bio-clip/node');
const h = require('./helpers');

const COSINE_TOLERANCE = 1e-4;  // the package's parity promise for the same JPEG bytes
// The same pixels through TF.js and Keras: float rounding only. Tight enough that a 1-level
// pixel change breaks them (the sensitivity test below).
const SAME_PIXELS_ONE_MINUS_COSINE = 1e-10;
const SAME_PIXELS_MAX_ABS = 1e-6;
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
      // Measured on the real student, cpu and wasm: 1 - cosine 4e-14..8e-14, max abs 1.5e-7..1.7e-7.
      assert.ok(1 - h.cosine(embedding, photo.embedding) < SAME_PIXELS_ONE_MINUS_COSINE, `cosine ${h.cosine(embedding, photo.embedding)}`);
      const maxDiff = Math.max(...Array.from(embedding, (v, i) => Math.abs(v - photo.embedding[i])));
      assert.ok(maxDiff < SAME_PIXELS_MAX_ABS, `max abs embedding difference ${maxDiff}`);
      const result = await bioClip.classify(pixels, {topK: 5});
      assert.deepStrictEqual(result.species.map((s) => s.index), photo.top5_species);
      // The probabilities are the softmax of Python's logits.
      const max = Math.max(...photo.logits);
      const z = photo.logits.reduce((acc, l) => acc + Math.exp(l - max), 0);
      result.species.forEach((s) => assert.ok(Math.abs(s.probability - Math.exp(photo.logits[s.index] - max) / z) < 1e-4));
    });

    await t.test('sensitivity: a 1-level pixel change breaks the same-pixels bounds', async () => {
      // The bounds above mean something only if the fixture's student reacts to small pixel
      // changes (the real MobileNetV3, briefly distilled, not a near-constant map): one level
      // (1/255) added to every pixel must move the embedding past both same-pixels bounds,
      // tenfold (measured: 1 - cosine 3.9e-8, max abs 1.1e-4).
      const photo = squares.find((p) => p.name === 'square_a');
      const pixels = h.readRgb('square_a.rgb', photo.width, photo.height);
      const maxDiff = (a, b) => Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));
      const shifted = bioClip.embed({...pixels, data: pixels.data.map((v) => (v < 255 ? v + 1 : v - 1))});
      const oneMinusCos = 1 - h.cosine(shifted, photo.embedding);
      assert.ok(oneMinusCos > 10 * SAME_PIXELS_ONE_MINUS_COSINE, `1 level on every pixel: 1 - cosine ${oneMinusCos}`);
      assert.ok(maxDiff(shifted, photo.embedding) > 10 * SAME_PIXELS_MAX_ABS,
                `1 level on every pixel: max abs ${maxDiff(shifted, photo.embedding)}`);
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
