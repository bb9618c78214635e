'use strict';
// <BioClipCamera>: what reaches the model (the whole camera texture, through the core's
// squashResize), throttling, tensor disposal, unmount.
//
// MOCKED, and only this: the phone (camera, GL context); see native_edge.js for exactly what.
// tfjs-react-native's fromTexture is replaced by a stand-in that returns real tf.Tensor3D
// frames of random pixels. requestAnimationFrame and the clock are driven by hand. The model,
// squashResize, classify() and TF.js are the real ones.
const test = require('node:test');
const assert = require('node:assert');
const React = require('react');
const TestRenderer = require('react-test-renderer');
const tf = require('@tensorflow/tfjs');
const {loadFromDirectory} = require('react-bio-clip/node');
const h = require('./helpers');
const {camera} = require('./native_edge');

global.IS_REACT_ACT_ENVIRONMENT = true;
const {act} = TestRenderer;

const {squashResize} = require('react-bio-clip');
const {BioClipCamera} = require('react-bio-clip/native');

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

  await t.test('classifies at most once per intervalMs and disposes every frame', async () => {
    camera.framesRead = 0;
    const results = [];
    let renderer;
    await act(async () => {
      renderer = TestRenderer.create(React.createElement(BioClipCamera, {
        model: bioClip, intervalMs: 100, cameraTextureWidth: 48, cameraTextureHeight: 64,
        onClassification: (r) => results.push([now, r]),
      }));
    });
    for (let i = 0; i < 62; ++i) await displayFrame();  // about 1 s of display frames
    await settle();
    // 62 display frames at 16 ms, classifications at least 100 ms apart: 10 (or 11), not 62.
    assert.ok(results.length >= 9 && results.length <= 11, `${results.length} classifications`);
    assert.strictEqual(camera.framesRead, results.length, 'frames are read only when a classification is due');
    for (let i = 1; i < results.length; ++i) assert.ok(results[i][0] - results[i - 1][0] >= 100);
    assert.strictEqual(results[0][1].species.length, 5);
    assert.strictEqual(tf.memory().numTensors, baseline, 'every camera frame tensor must be disposed');

    assert.ok(camera.previews >= 62, 'the preview is drawn every display frame');
    const contexts = camera.destroyedContexts;
    await act(async () => renderer.unmount());
    assert.strictEqual(frames.size, 0, 'unmount cancels the pending animation frame');
    assert.strictEqual(camera.destroyedContexts, contexts + 1, 'unmount destroys the GL context');
    const read = camera.framesRead;
    for (let i = 0; i < 20; ++i) await displayFrame();
    assert.strictEqual(camera.framesRead, read, 'no frames are read after unmount');
  });

  await t.test('unmount with a classification in flight: no callback, frame still disposed', async () => {
    const results = [];
    let renderer;
    const read = camera.framesRead;
    let inFlight = false;
    const slowModel = {
      resolution: bioClip.resolution,
      classify: (image, options) => {
        inFlight = true;
        return new Promise((resolve) => setTimeout(resolve, 50)).then(() => bioClip.classify(image, options));
      },
    };
    await act(async () => {
      renderer = TestRenderer.create(React.createElement(BioClipCamera, {
        model: slowModel, intervalMs: 100, cameraTextureWidth: 48, cameraTextureHeight: 64,
        onClassification: (r) => results.push(r),
      }));
    });
    assert.strictEqual(camera.framesRead, read + 1, 'the first frame is read once the GL context exists');
    assert.ok(inFlight, 'its classification is in flight');
    await act(async () => renderer.unmount());
    assert.ok(tf.memory().numTensors > baseline, 'the R x R input is still alive while its classification runs');
    await act(async () => new Promise((resolve) => setTimeout(resolve, 150)));  // the classification settles
    await settle();
    assert.strictEqual(results.length, 0, 'no callback after unmount');
    assert.strictEqual(tf.memory().numTensors, baseline, 'the in-flight input is disposed when it settles');
    // Remount after remount: each mount starts one loop, none survives its unmount.
    for (let i = 0; i < 5; ++i) {
      await act(async () => {
        renderer = TestRenderer.create(React.createElement(BioClipCamera, {
          model: bioClip, cameraTextureWidth: 48, cameraTextureHeight: 64, onClassification: () => {},
        }));
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
        model: bioClip, classifyOptions: {topK: 0}, cameraTextureWidth: 48, cameraTextureHeight: 64,
        onClassification: () => assert.fail('must not succeed'),
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

  await t.test('the model sees the whole texture squashed by the core\'s squashResize, nothing else', async () => {
    camera.reads.length = 0;
    const results = [];
    let renderer;
    await act(async () => {
      renderer = TestRenderer.create(React.createElement(BioClipCamera, {
        model: bioClip, intervalMs: 100, cameraTextureWidth: 120, cameraTextureHeight: 200,
        onClassification: (r) => results.push(r),
      }));
    });
    await settle();
    assert.strictEqual(results.length, 1);
    // The full texture is read (no GPU pre-resize by tfjs-react-native, which aliases), RGBA.
    const [read] = camera.reads;
    assert.deepStrictEqual(read.source, {width: 120, height: 200, depth: 4});
    assert.deepStrictEqual(read.target, {width: 120, height: 200, depth: 4});
    // Rebuild that very frame and preprocess it with the exported function: the camera's
    // embedding must be the one of squashResize(frame), bit for bit.
    const frame = tf.tensor3d(camera.lastFrameValues.values, camera.lastFrameValues.shape, 'int32');
    const input = squashResize(frame, bioClip.resolution);
    const expected = bioClip.embed(input);
    assert.deepStrictEqual(Array.from(results[0].embedding), Array.from(expected));
    // And it is not what a plain bilinear squash (tfjs-react-native's resize) would give.
    const bilinear = tf.tidy(() => tf.image.resizeBilinear(tf.cast(tf.slice(frame, [0, 0, 0], [-1, -1, 3]), 'float32'),
                                                           [bioClip.resolution, bioClip.resolution], false, true));
    assert.notDeepStrictEqual(Array.from(bioClip.embed(bilinear)), Array.from(expected));
    tf.dispose([frame, input, bilinear]);
    await act(async () => renderer.unmount());
    assert.strictEqual(tf.memory().numTensors, baseline);
  });

  await t.test('rotation 90 reads the texture turned (width and height swapped)', async () => {
    camera.reads.length = 0;
    let renderer;
    const results = [];
    await act(async () => {
      renderer = TestRenderer.create(React.createElement(BioClipCamera, {
        model: bioClip, rotation: 90, cameraTextureWidth: 48, cameraTextureHeight: 64,
        onClassification: (r) => results.push(r),
      }));
    });
    await settle();
    assert.strictEqual(results.length, 1);
    assert.deepStrictEqual(camera.reads[0].target, {width: 64, height: 48, depth: 4});
    assert.strictEqual(camera.reads[0].options.rotation, 90);
    await act(async () => renderer.unmount());
    assert.strictEqual(tf.memory().numTensors, baseline);
  });

  await t.test('showPreview false: classifies, draws no preview', async () => {
    const previews = camera.previews;
    const results = [];
    let renderer;
    await act(async () => {
      renderer = TestRenderer.create(React.createElement(BioClipCamera, {
        model: bioClip, showPreview: false, intervalMs: 100, cameraTextureWidth: 48, cameraTextureHeight: 64,
        onClassification: (r) => results.push(r),
      }));
    });
    for (let i = 0; i < 10; ++i) await displayFrame();
    await settle();
    assert.ok(results.length >= 1);
    assert.strictEqual(camera.previews, previews);
    await act(async () => renderer.unmount());
    assert.strictEqual(tf.memory().numTensors, baseline);
  });

  await t.test('a camera texture that cannot be made goes to onError, no loop starts', async () => {
    camera.failTexture = new Error('no camera');
    const errors = [];
    const read = camera.framesRead;
    let renderer;
    await act(async () => {
      renderer = TestRenderer.create(React.createElement(BioClipCamera, {
        model: bioClip, onClassification: () => assert.fail('no frames'), onError: (e) => errors.push(e),
      }));
    });
    await settle();
    camera.failTexture = null;
    assert.deepStrictEqual(errors.map((e) => e.message), ['no camera']);
    assert.strictEqual(frames.size, 0);
    assert.strictEqual(camera.framesRead, read);
    await act(async () => renderer.unmount());
  });
});
