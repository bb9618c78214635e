'use strict';
// RGBA input takes a faster path than it used to (alpha stripped in one JS pass for pixel
// bytes; for [H, W, 4] tensors, dropped after the squash instead of slicing the full-size
// tensor). It must give the model exactly the pixels the RGB path gives. Speed is measured by
// bench/rgba_input.js, not here.
const test = require('node:test');
const assert = require('node:assert');
const tf = require('@tensorflow/tfjs');
const {toModelInput, toRgbFloat} = require('../dist/preprocess');
const h = require('./helpers');

// Not multiples of either resolution, so both resize steps of 'area' run; a texture with every
// byte value and different content per channel, so a channel mix-up or an alpha leak shows.
const W = 701;
const H = 463;
const rgb = new Uint8Array(W * H * 3);
const rgba = new Uint8ClampedArray(W * H * 4);
for (let p = 0; p < W * H; ++p) {
  const x = p % W, y = Math.floor(p / W);
  const pixel = [(x * 7 + y * 3) & 255, (x * y + 91) & 255, ((x ^ y) * 13) & 255];
  rgb.set(pixel, 3 * p);
  rgba.set([...pixel, (p * 31) & 255], 4 * p);  // alpha must not reach the colours
}

const values = (make) => tf.tidy(() => Array.from(make().dataSync()));

for (const backend of h.BACKENDS) {
  test(`RGBA gives the same model input as RGB on ${backend}`, async () => {
    await h.useBackend(backend);
    const before = tf.memory().numTensors;
    assert.deepStrictEqual(values(() => toRgbFloat({data: rgba, width: W, height: H})), Array.from(rgb),
                           'RGBA bytes to float32 RGB at full size');
    const rgbTensor = tf.tensor3d(rgb, [H, W, 3], 'int32');
    const rgbaTensor = tf.tensor3d(new Int32Array(rgba), [H, W, 4], 'int32');
    const rgbaFloat = tf.cast(rgbaTensor, 'float32');
    for (const resolution of [32, 224]) {
      for (const method of ['area', 'bilinear']) {
        const what = `${resolution}, ${method}`;
        const reference = values(() => toModelInput({data: rgb, width: W, height: H}, resolution, method));
        assert.strictEqual(reference.length, resolution * resolution * 3);
        assert.deepStrictEqual(values(() => toModelInput({data: rgba, width: W, height: H}, resolution, method)), reference, `RGBA bytes, ${what}`);
        assert.deepStrictEqual(values(() => toModelInput({data: new Uint8Array(rgba.buffer), width: W, height: H}, resolution, method)),
                               reference, `RGBA as Uint8Array, ${what}`);
        assert.deepStrictEqual(values(() => toModelInput(rgbTensor, resolution, method)), reference, `int32 RGB tensor, ${what}`);
        assert.deepStrictEqual(values(() => toModelInput(rgbaTensor, resolution, method)), reference, `int32 RGBA tensor, ${what}`);
        assert.deepStrictEqual(values(() => toModelInput(rgbaFloat, resolution, method)), reference, `float32 RGBA tensor, ${what}`);
      }
    }
    tf.dispose([rgbTensor, rgbaTensor, rgbaFloat]);
    assert.strictEqual(tf.memory().numTensors, before);
  });
}
