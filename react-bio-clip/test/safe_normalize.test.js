'use strict';
// The half-float path's pieces, on cpu: preNormalizationNode finds the tensor the exported
// graph L2-normalizes (the real export stage's graph), and safeL2Normalize equals plain L2
// normalization, also for rows long enough to overflow a float16 sum of squares. The browser
// test (test-browser/) runs them on WebGL with half-float textures.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const {preNormalizationNode, safeL2Normalize} = require('../dist/precision');
const h = require('./helpers');

test('preNormalizationNode: the graph output is l2_normalize(node), and running to it matches', async () => {
  await h.useBackend('cpu');
  const json = JSON.parse(fs.readFileSync(path.join(h.SMALL_DIR, 'tfjs', 'model.json'), 'utf8'));
  const weights = Buffer.concat(json.weightsManifest.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(h.SMALL_DIR, 'tfjs', p)))));
  const model = await tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: json.modelTopology, weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
    weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.length), signature: json.signature,
  }));
  const node = preNormalizationNode(model);
  assert.ok(node, 'the exported graph ends in an l2_normalize pattern');
  const R = model.inputs[0].shape[1];
  const x = tf.randomUniform([2, R, R, 3], 0, 255, 'float32', 1);
  const direct = model.predict(x).arraySync();
  const viaNode = tf.tidy(() => safeL2Normalize(model.execute(x, node)).arraySync());
  direct.forEach((row, i) => row.forEach((v, j) => assert.ok(Math.abs(v - viaNode[i][j]) < 1e-6)));
  x.dispose();
  model.dispose();
});

test('safeL2Normalize: unit rows, also for entries whose squares overflow float16', async () => {
  await h.useBackend('cpu');
  const rows = [[3, 4, 0], [3e4, -4e4, 0], [0, 0, 0], [1e-3, 0, 0]];
  const got = tf.tidy(() => safeL2Normalize(tf.tensor2d(rows)).arraySync());
  const want = [[0.6, 0.8, 0], [0.6, -0.8, 0], [0, 0, 0], [1, 0, 0]];
  got.forEach((row, i) => row.forEach((v, j) => assert.ok(Math.abs(v - want[i][j]) < 1e-6, `${rows[i]} -> ${row}`)));
});

test('preNormalizationNode: null for a graph without the pattern', () => {
  assert.strictEqual(preNormalizationNode({outputs: [{name: 'y'}], artifacts: {modelTopology: {node: [{name: 'y', op: 'Relu', input: ['x']}]}}}), null);
  assert.strictEqual(preNormalizationNode({outputs: [{name: 'y'}]}), null);
});
