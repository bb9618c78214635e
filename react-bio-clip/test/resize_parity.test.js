'use strict';
// The camera path's pixels against Python: squashResize (the function BioClipCamera and
// classify() call) fed frame tensors, against bioclip_lite_tf.model.layers.squash_resize of the same
// pixels (the student's training input), on textured 1080 x 1920 and 4032 x 3024 frames.
// References: scripts/make_resize_reference.py, pointed to by REACT_BIO_CLIP_RESIZE_REFERENCE
// (`make test-js` makes them; about 90 MB, so they are not committed). Goal (issue 14): mean
// |diff| <= 0.5 and max <= 3 levels of 255.
const test = require('node:test');
const assert = require('node:assert');
const tf = require('@tensorflow/tfjs');
const core = require('react-bio-clip');
const preprocess = require('../dist/preprocess');
const {BioClipInputError} = core;
const h = require('./helpers');
const ref = require('./resize_reference');

const DIR = process.env.REACT_BIO_CLIP_RESIZE_REFERENCE;
const GOAL = {mean: 0.5, max: 3};

test('squashResize matches the training resize on camera-sized frames', {skip: !DIR && 'set REACT_BIO_CLIP_RESIZE_REFERENCE (make test-js does)'}, async (t) => {
  const {resolution: R, frames} = ref.readReference(DIR);
  assert.ok(frames.some((f) => f.height === 1920 && f.width === 1080) && frames.some((f) => f.height === 3024 && f.width === 4032),
            'the references must include 1080 x 1920 and 4032 x 3024 frames');
  for (const backend of h.BACKENDS) {
    await h.useBackend(backend);
    for (const frame of frames) {
      await t.test(`${frame.name} (${frame.width} x ${frame.height}) on ${backend}`, () => {
        const pixels = frame.rgb();
        const train = frame.train();
        const before = tf.memory().numTensors;
        const stats = ref.compareFrame({core, preprocess}, frame, pixels, train, R, ['bicubic', 'bilinear']);
        assert.strictEqual(tf.memory().numTensors, before, 'squashResize leaked tensors');
        const {bicubic, bilinear} = stats;
        assert.ok(bicubic.mean <= GOAL.mean && bicubic.max <= GOAL.max, `bicubic: ${JSON.stringify(bicubic)}`);
        // Same math in float32 on both sides: far inside the goal. A wrong tap, phase or band
        // shows up here long before it reaches the goal's limits.
        assert.ok(bicubic.mean <= 0.01 && bicubic.max <= 0.1, `bicubic vs TF: ${JSON.stringify(bicubic)}`);
        if (frame.height > 2 * R) assert.ok(bilinear.mean > 10 * bicubic.mean, `the reference must tell resizes apart: ${JSON.stringify(stats)}`);
        // RGBA (alpha dropped) and float32 give the same pixels.
        const rgba = ref.frameTensor(frame, pixels, {rgba: true});
        const fromRgba = tf.tidy(() => core.squashResize(rgba, R).dataSync());
        rgba.dispose();
        assert.ok(ref.diffStats(fromRgba, train).max <= 0.1, 'RGBA input');
        if (frame.height * frame.width <= 1920 * 1080) {
          const f32 = ref.frameTensor(frame, pixels, {dtype: 'float32'});
          const fromFloat = tf.tidy(() => core.squashResize(f32, R).dataSync());
          f32.dispose();
          assert.ok(ref.diffStats(fromFloat, train).max <= 0.1, 'float32 input');
          const fromBytes = tf.tidy(() => core.squashResize({data: pixels, width: frame.width, height: frame.height}, R).dataSync());
          assert.ok(ref.diffStats(fromBytes, train).max <= 0.1, '{data, width, height} input');
        }
      });
    }
  }
});

test('squashResize: shape, ownership and typed errors', async () => {
  await h.useBackend('cpu');
  const square = tf.tensor3d(new Int32Array(8 * 8 * 3).map((_, i) => i % 256), [8, 8, 3], 'int32');
  const same = core.squashResize(square, 8);
  assert.deepStrictEqual(same.shape, [8, 8, 3]);
  assert.strictEqual(same.dtype, 'float32');
  assert.deepStrictEqual(Array.from(same.dataSync()), Array.from(square.dataSync()));
  same.dispose();
  assert.ok(!square.isDisposed, 'the input is never disposed');
  const small = core.squashResize(square, 3);
  assert.deepStrictEqual(small.shape, [3, 3, 3]);
  small.dispose();
  assert.throws(() => core.squashResize(square, 0), BioClipInputError);
  assert.throws(() => core.squashResize(square, 2.5), BioClipInputError);
  const gray = tf.zeros([8, 8, 1]);
  assert.throws(() => core.squashResize(gray, 4), BioClipInputError);
  const flags = tf.zeros([8, 8, 3], 'bool');
  assert.throws(() => core.squashResize(flags, 4), BioClipInputError);
  flags.dispose();
  gray.dispose();
  square.dispose();
});
