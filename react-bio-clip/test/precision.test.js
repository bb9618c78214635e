'use strict';
// measureFloatPrecision and BioClip.precision on the CPU-memory backends (float32 tensors):
// no half-float warning there. The half-float case runs on WebGL in test-browser/webgl.test.js.
const test = require('node:test');
const assert = require('node:assert');
const {measureFloatPrecision} = require('react-bio-clip');
const {loadFromDirectory} = require('react-bio-clip/node');
const tf = require('@tensorflow/tfjs');
const h = require('./helpers');

for (const backend of h.BACKENDS) {
  test(`float32 on ${backend}: measured, reported, no warning`, async () => {
    await h.useBackend(backend);
    const before = tf.memory().numTensors;
    assert.strictEqual(measureFloatPrecision(), 'float32');
    assert.strictEqual(tf.memory().numTensors, before, 'the probe leaked tensors');
    const warnings = [];
    const bioClip = await loadFromDirectory(h.SMALL_DIR, {onWarning: (m) => warnings.push(m)});
    assert.strictEqual(bioClip.precision, 'float32');
    assert.deepStrictEqual(warnings, []);
    bioClip.dispose();
  });
}
