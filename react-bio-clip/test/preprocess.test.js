'use strict';
// Decode and resize against Python. Stated tolerances (README "Preprocessing"), in 0..255 levels:
//   jpeg-js vs PIL (libjpeg-turbo) decode of the same JPEG: mean |diff| <= 1.5, max <= 12
//     (IDCT and chroma-upsampling rounding; measured 0.90 / 6 on the fixture photo)
//   'area' squash vs PIL bicubic (the teacher's resize), 672 x 480 -> 224: mean <= 1.0, max <= 8
//     (measured 0.61 / 3.75; plain bilinear measured 1.43 / 11)
const test = require('node:test');
const assert = require('node:assert');
const tf = require('@tensorflow/tfjs');
const {loadFromDirectory} = require('react-bio-clip/node');
const {squash, toRgbFloat} = require('../dist/preprocess');
const h = require('./helpers');

const exp = h.expected();
const R = exp.resolution;
const {diffStats} = require('./resize_reference');


test('jpeg-js decodes like PIL within the stated tolerance', () => {
  const js = h.decodeJpeg('square_a');
  const py = h.readRgb('square_a.rgb', js.width, js.height);
  const {mean, max} = diffStats(js.data, py.data);
  assert.ok(mean <= 1.5 && max <= 12, `decode difference mean ${mean}, max ${max}`);
});

for (const backend of h.BACKENDS) {
  test(`squash resize vs PIL bicubic on ${backend}`, async (t) => {
    await h.useBackend(backend);
    const large = h.decodeJpeg('large');
    const bicubic = h.readRgb('large.bicubic.rgb', R, R);
    assert.ok(large.height >= 2 * R && large.width >= 2 * R, 'the fixture must exercise the box filter');
    const resized = (method) => tf.tidy(() => squash(toRgbFloat(large), R, method).dataSync());
    const area = diffStats(resized('area'), bicubic.data);
    const bilinear = diffStats(resized('bilinear'), bicubic.data);
    assert.ok(area.mean <= 1.0 && area.max <= 8, `area: mean ${area.mean}, max ${area.max}`);
    assert.ok(area.mean < bilinear.mean, `area (${area.mean}) should beat bilinear (${bilinear.mean})`);

    await t.test('the embedding of a large JPEG matches Python\'s bicubic-squash embedding', async () => {
      const bioClip = await loadFromDirectory(h.EXPORT_DIR);
      const photo = exp.photos.find((p) => p.name === 'large');
      const cos = h.cosine(bioClip.embed(large), photo.bicubic_embedding);
      assert.ok(1 - cos <= 1e-4, `cosine ${cos}`);
      bioClip.dispose();
    });

    await t.test('an R x R photo is passed through untouched; RGBA drops alpha; tensor == pixels', async () => {
      const square = h.decodeJpeg('square_a');
      const same = tf.tidy(() => squash(toRgbFloat(square), R, 'area').dataSync());
      assert.deepStrictEqual(Array.from(same), Array.from(square.data));
      const rgba = new Uint8ClampedArray(R * R * 4);
      for (let i = 0; i < R * R; ++i) {
        rgba.set(square.data.subarray(3 * i, 3 * i + 3), 4 * i);
        rgba[4 * i + 3] = 7;  // alpha must not leak into the colours
      }
      const fromRgba = tf.tidy(() => squash(toRgbFloat({data: rgba, width: R, height: R}), R, 'area').dataSync());
      assert.deepStrictEqual(Array.from(fromRgba), Array.from(square.data));
      const tensor = tf.tensor3d(square.data, [R, R, 3], 'int32');
      const fromTensor = tf.tidy(() => squash(toRgbFloat(tensor), R, 'area').dataSync());
      tensor.dispose();
      assert.deepStrictEqual(Array.from(fromTensor), Array.from(square.data));
    });
  });
}
