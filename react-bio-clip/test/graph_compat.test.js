'use strict';
// The scalar-fused-bias fix: the TF.js converter fuses MobileNetV3's hard-sigmoid "+ 3" into a
// bias-free conv as a rank-0 bias, which the wasm backend rejects. A hand-built graph with such a
// node must load on wasm after the fix and give what the cpu backend gives without it.
const test = require('node:test');
const assert = require('node:assert');
const tf = require('@tensorflow/tfjs');
const {expandScalarFusedBias} = require('../dist/graph_compat');
const h = require('./helpers');

const b64 = (s) => Buffer.from(s).toString('base64');
const shape = (dims) => ({dim: dims.map((d) => ({size: String(d)}))});
const constNode = (name, dims) => ({name, op: 'Const', attr: {value: {tensor: {dtype: 'DT_FLOAT', tensorShape: dims.length ? shape(dims) : {}}}, dtype: {type: 'DT_FLOAT'}}});

/** x [N,4,4,2] -> relu6(conv1x1(x, w) + bias) (+ the same through a depthwise conv), bias a scalar. */
function artifacts(biasQuantized) {
  const common = {T: {type: 'DT_FLOAT'}, strides: {list: {i: ['1', '1', '1', '1']}}, padding: {s: b64('SAME')},
                  data_format: {s: b64('NHWC')}, dilations: {list: {i: ['1', '1', '1', '1']}},
                  fused_ops: {list: {s: [b64('BiasAdd'), b64('Relu6')]}}, num_args: {i: '1'}, epsilon: {f: 0}};
  const topology = {node: [
    {name: 'x', op: 'Placeholder', attr: {dtype: {type: 'DT_FLOAT'}, shape: {shape: shape([-1, 4, 4, 2])}}},
    constNode('w', [1, 1, 2, 3]), constNode('dw', [3, 3, 2, 2]), constNode('b', []),
    {name: 'conv', op: '_FusedConv2D', input: ['x', 'w', 'b'], attr: common},
    {name: 'depthwise', op: 'FusedDepthwiseConv2dNative', input: ['x', 'dw', 'b'], attr: common},
  ], versions: {producer: 1}};
  const w = Float32Array.from({length: 6}, (_, i) => (i - 2.5) / 4);
  const dw = Float32Array.from({length: 36}, (_, i) => Math.sin(i) / 3);
  const specs = [{name: 'w', shape: [1, 1, 2, 3], dtype: 'float32'}, {name: 'dw', shape: [3, 3, 2, 2], dtype: 'float32'}];
  let bias;
  if (biasQuantized) {  // 3 stored as uint8 200 with scale 0.015, min 0
    specs.push({name: 'b', shape: [], dtype: 'float32', quantization: {dtype: 'uint8', scale: 0.015, min: 0}});
    bias = Uint8Array.of(200);
  } else {
    specs.push({name: 'b', shape: [], dtype: 'float32'});
    bias = new Uint8Array(Float32Array.of(3).buffer);
  }
  const data = Buffer.concat([Buffer.from(w.buffer), Buffer.from(dw.buffer), Buffer.from(bias)]);
  return {modelTopology: topology, weightSpecs: specs, weightData: new Uint8Array(data).buffer, format: 'graph-model'};
}

async function run(model) {
  const x = tf.tensor4d(Float32Array.from({length: 32}, (_, i) => (i % 7) - 2), [1, 4, 4, 2]);
  const outs = model.execute(x, ['conv', 'depthwise']);
  const values = await Promise.all(outs.map((o) => o.data()));
  tf.dispose([x, ...outs]);
  return values.map((v) => Array.from(v));
}

for (const quantized of [false, true]) {
  test(`scalar fused bias (${quantized ? 'uint8-stored' : 'float32'}) runs on wasm and matches cpu`, async () => {
    await h.useBackend('cpu');
    const reference = await tf.loadGraphModel(tf.io.fromMemory(artifacts(quantized)));
    const expected = await run(reference);
    reference.dispose();

    const fixed = expandScalarFusedBias(artifacts(quantized));
    const biasNames = fixed.modelTopology.node.filter((n) => n.op !== 'Const' && n.op !== 'Placeholder').map((n) => n.input[2]);
    assert.deepStrictEqual(biasNames, ['b/broadcast_3', 'b/broadcast_4'], 'conv: 3 output channels, depthwise: 2 x 2');

    await h.useBackend('wasm');
    const unfixed = await tf.loadGraphModel(tf.io.fromMemory(artifacts(quantized)));
    await assert.rejects(run(unfixed), /rank-1 bias/, 'the premise: wasm rejects a scalar fused bias');
    unfixed.dispose();
    const model = await tf.loadGraphModel(tf.io.fromMemory(fixed));
    const actual = await run(model);
    model.dispose();
    actual.forEach((values, k) => values.forEach((v, i) => assert.ok(Math.abs(v - expected[k][i]) < 1e-5, `output ${k}[${i}]: ${v} vs ${expected[k][i]}`)));
    assert.ok(expected[0].some((v) => v > 0 && v < 6), 'the bias must matter (not all clipped)');
  });
}

test('graphs without a scalar fused bias come back untouched', () => {
  const plain = artifacts(false);
  plain.modelTopology.node[3] = constNode('b', [3]);
  plain.weightSpecs[2] = {name: 'b', shape: [3], dtype: 'float32'};
  assert.strictEqual(expandScalarFusedBias(plain), plain);
});
