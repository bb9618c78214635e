'use strict';
// <BioClipCamera>: throttling and tensor disposal; loadBundled.
//
// MOCKED, and only this: the phone camera cannot run in Node, so the two outermost modules are
// replaced: expo-camera (its Camera component) and tfjs-react-native (cameraWithTensors, whose
// stand-in renders nothing and feeds onReady() an iterator of real tf.Tensor3D frames, as the
// real TensorCamera does from the GL texture; bundleResourceIO, which returns the fixture's real
// model artifacts instead of reading Metro assets). requestAnimationFrame and the clock are
// driven by hand. The model, classify() and TF.js are the real ones.
const test = require('node:test');
const assert = require('node:assert');
const Module = require('module');
const React = require('react');
const TestRenderer = require('react-test-renderer');
const tf = require('@tensorflow/tfjs');
const {loadFromDirectory} = require('react-bio-clip/node');
const h = require('./helpers');

global.IS_REACT_ACT_ENVIRONMENT = true;
const {act} = TestRenderer;

// --- the mocked edge -------------------------------------------------------------------------
const camera = {props: null, framesRead: 0, readyCalls: 0};
function cameraWithTensors(CameraComponent) {
  assert.strictEqual(CameraComponent, mocks['expo-camera'].Camera, 'must wrap expo-camera\'s Camera');
  return function FakeTensorCamera(props) {
    camera.props = props;
    React.useEffect(() => {
      camera.readyCalls += 1;
      const frames = {
        next() {
          camera.framesRead += 1;
          return {value: tf.randomUniform([props.resizeHeight, props.resizeWidth, props.resizeDepth], 0, 255, 'int32'), done: false};
        },
        [Symbol.iterator]() {
          return this;
        },
      };
      props.onReady(frames, () => {}, {});
    }, []);
    return null;
  };
}
const mocks = {
  '@tensorflow/tfjs-react-native': {cameraWithTensors, bundleResourceIO: () => { throw new Error('not used here'); }},
  'expo-camera': {Camera: function Camera() { return null; }},
};
const resolve = Module._resolveFilename;
Module._resolveFilename = function(request, ...rest) {
  return request in mocks ? `mock:${request}` : resolve.call(this, request, ...rest);
};
for (const [name, exports] of Object.entries(mocks)) {
  require.cache[`mock:${name}`] = {id: `mock:${name}`, filename: `mock:${name}`, loaded: true, exports};
}
const {BioClipCamera, loadBundled} = require('react-bio-clip/native');

// --- hand-driven animation frames and clock --------------------------------------------------
const frames = new Map();
let nextFrameId = 0;
let now = 0;
global.requestAnimationFrame = (callback) => {
  frames.set(++nextFrameId, callback);
  return nextFrameId;
};
global.cancelAnimationFrame = (id) => frames.delete(id);
const realNow = Date.now;
Date.now = () => now;

/** Advances one 16 ms display frame and lets the classifications in flight settle. */
async function displayFrame() {
  now += 16;
  const due = [...frames.values()];
  frames.clear();
  await act(async () => {
    due.forEach((callback) => callback());
    for (let i = 0; i < 3; ++i) await new Promise((r) => setImmediate(r));
  });
}

async function settle() {
  for (let i = 0; i < 20; ++i) await act(async () => new Promise((r) => setImmediate(r)));
}

test('BioClipCamera', async (t) => {
  await h.useBackend('cpu');
  const bioClip = await loadFromDirectory(h.SMALL_DIR);
  const baseline = tf.memory().numTensors;
  t.after(() => {
    Date.now = realNow;
    bioClip.dispose();
  });

  await t.test('loadBundled hands the bundled model.json and weight asset ids to bundleResourceIO', async () => {
    const {readExportDirectory} = require('react-bio-clip/node');
    const fs = require('fs');
    const path = require('path');
    const exported = await readExportDirectory(h.SMALL_DIR);
    const calls = [];
    // The edge again: bundleResourceIO reads Metro assets on a phone; here it returns the
    // export's real artifacts.
    mocks['@tensorflow/tfjs-react-native'].bundleResourceIO = (modelJson, weightIds) => {
      calls.push([modelJson, weightIds]);
      return exported.model;
    };
    const modelJson = JSON.parse(fs.readFileSync(path.join(h.SMALL_DIR, 'tfjs/model.json'), 'utf8'));
    const bundled = await loadBundled({
      modelJson, modelWeights: [17], manifest: exported.manifest,
      labelsJson: JSON.parse(Buffer.from(exported.labels.json).toString('utf8')), labelsBin: exported.labels.bin,
    });
    assert.deepStrictEqual(calls, [[modelJson, [17]]]);
    const square = h.decodeJpeg('square_a');
    assert.deepStrictEqual(Array.from(bundled.embed(square)), Array.from(bioClip.embed(square)));
    bundled.dispose();
    assert.strictEqual(tf.memory().numTensors, baseline);
  });

  await t.test('classifies at most once per intervalMs and disposes every frame', async () => {
    camera.framesRead = 0;
    const results = [];
    let renderer;
    await act(async () => {
      renderer = TestRenderer.create(React.createElement(BioClipCamera, {
        model: bioClip, intervalMs: 100, onClassification: (r) => results.push([now, r]),
      }));
    });
    assert.strictEqual(camera.props.resizeWidth, bioClip.resolution, 'frames are squashed to R x R on the GPU');
    assert.strictEqual(camera.props.resizeHeight, bioClip.resolution);
    assert.strictEqual(camera.props.resizeDepth, 3);
    for (let i = 0; i < 62; ++i) await displayFrame();  // about 1 s of display frames
    await settle();
    // 62 display frames at 16 ms, classifications at least 100 ms apart: 10 (or 11), not 62.
    assert.ok(results.length >= 9 && results.length <= 11, `${results.length} classifications`);
    assert.strictEqual(camera.framesRead, results.length, 'frames are read only when a classification is due');
    for (let i = 1; i < results.length; ++i) assert.ok(results[i][0] - results[i - 1][0] >= 100);
    assert.strictEqual(results[0][1].species.length, 5);
    assert.strictEqual(tf.memory().numTensors, baseline, 'every camera frame tensor must be disposed');

    await act(async () => renderer.unmount());
    assert.strictEqual(frames.size, 0, 'unmount cancels the pending animation frame');
    const read = camera.framesRead;
    for (let i = 0; i < 20; ++i) await displayFrame();
    assert.strictEqual(camera.framesRead, read, 'no frames are read after unmount');
  });

  await t.test('unmount with a classification in flight: no callback, frame still disposed', async () => {
    const results = [];
    let renderer;
    await act(async () => {
      renderer = TestRenderer.create(React.createElement(BioClipCamera, {
        model: bioClip, intervalMs: 100, onClassification: (r) => results.push(r),
      }));
      // The first frame was read on mount and its classification is in flight now.
      renderer.unmount();
    });
    await settle();
    assert.strictEqual(results.length, 0);
    assert.strictEqual(tf.memory().numTensors, baseline);
    // Remount after remount: each mount starts one loop, none survives its unmount.
    for (let i = 0; i < 5; ++i) {
      await act(async () => {
        renderer = TestRenderer.create(React.createElement(BioClipCamera, {model: bioClip, onClassification: () => {}}));
      });
      await displayFrame();
      await act(async () => renderer.unmount());
    }
    await settle();
    assert.strictEqual(frames.size, 0);
    assert.strictEqual(tf.memory().numTensors, baseline);
  });

  await t.test('errors go to onError and the frame is still disposed; no model, no frames', async () => {
    const errors = [];
    let renderer;
    await act(async () => {
      renderer = TestRenderer.create(React.createElement(BioClipCamera, {
        model: bioClip, classifyOptions: {topK: 0}, onClassification: () => assert.fail('must not succeed'),
        onError: (e) => errors.push(e),
      }));
    });
    await settle();
    assert.strictEqual(errors.length, 1);
    assert.match(errors[0].message, /topK/);
    await act(async () => renderer.unmount());

    camera.framesRead = 0;
    await act(async () => {
      renderer = TestRenderer.create(React.createElement(BioClipCamera, {model: null, onClassification: () => {}}));
    });
    for (let i = 0; i < 10; ++i) await displayFrame();
    assert.strictEqual(camera.framesRead, 0, 'without a model the camera shows but reads no frames');
    await act(async () => renderer.unmount());
    assert.strictEqual(tf.memory().numTensors, baseline);
  });
});
