'use strict';
// useBioClip with react-test-renderer: status transitions, errors, and no model left behind on
// unmount or when the options change (also mid-load).
const test = require('node:test');
const assert = require('node:assert');
const React = require('react');
const TestRenderer = require('react-test-renderer');
const tf = require('@tensorflow/tfjs');
const {BioClipError} = require('react-bio-clip');
const {readExportDirectory} = require('react-bio-clip/node');
const {useBioClip} = require('react-bio-clip/react');
const h = require('./helpers');

global.IS_REACT_ACT_ENVIRONMENT = true;
const {act} = TestRenderer;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Renders the hook; `states` collects every result it returned. */
function Probe({options, states}) {
  states.push(useBioClip(options));
  return null;
}

/** An IOHandler that counts its loads (wraps the real one). */
function countingModel(handler) {
  const counting = {loads: 0, load: async () => {
    counting.loads += 1;
    return handler.load();
  }};
  return counting;
}

async function waitFor(predicate, what, timeoutMs = 10000) {
  const start = Date.now();
  while (!predicate()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await act(async () => sleep(10));
  }
}

test('useBioClip', async (t) => {
  await h.useBackend('cpu');
  const exported = await readExportDirectory(h.SMALL_DIR);
  const baseline = tf.memory().numTensors;

  await t.test('loading -> ready, and the model is disposed on unmount', async () => {
    const states = [];
    const options = {...exported, model: countingModel(exported.model)};
    let renderer;
    await act(async () => {
      renderer = TestRenderer.create(React.createElement(Probe, {options, states}));
    });
    assert.strictEqual(states[0].status, 'loading');
    assert.strictEqual(states[0].model, null);
    await waitFor(() => states[states.length - 1].status === 'ready', 'ready');
    const {model} = states[states.length - 1];
    assert.strictEqual(model.embed(h.decodeJpeg('square_a')).length, model.embedDim);
    // Re-rendering with the same options must not reload.
    await act(async () => renderer.update(React.createElement(Probe, {options: {...options}, states})));
    assert.strictEqual(options.model.loads, 1);
    assert.strictEqual(states[states.length - 1].model, model);
    await act(async () => renderer.unmount());
    assert.strictEqual(tf.memory().numTensors, baseline, 'unmount must dispose the model');
  });

  await t.test('changing the options reloads and disposes the old model', async () => {
    const states = [];
    let renderer;
    await act(async () => {
      renderer = TestRenderer.create(React.createElement(Probe, {options: exported, states}));
    });
    await waitFor(() => states[states.length - 1].status === 'ready', 'first ready');
    const first = states[states.length - 1].model;
    const other = {...exported, resize: 'bilinear'};
    await act(async () => renderer.update(React.createElement(Probe, {options: other, states})));
    await waitFor(() => states[states.length - 1].status === 'ready' && states[states.length - 1].model !== first, 'second ready');
    assert.throws(() => first.embed(h.decodeJpeg('square_a')), /disposed/);
    await act(async () => renderer.unmount());
    assert.strictEqual(tf.memory().numTensors, baseline);
  });

  await t.test('unmounting while loading leaks nothing', async () => {
    const states = [];
    const options = {...exported, model: countingModel(exported.model)};
    let renderer;
    await act(async () => {
      renderer = TestRenderer.create(React.createElement(Probe, {options, states}));
    });
    await act(async () => renderer.unmount());
    await waitFor(() => options.model.loads === 1, 'the load to start');
    await sleep(1000);  // the load finishes after unmount, then must dispose what it made
    assert.strictEqual(tf.memory().numTensors, baseline);
    assert.ok(states.every((s) => s.status === 'loading'), 'no state update after unmount');
  });

  await t.test('errors surface as status "error" with the typed error', async () => {
    const states = [];
    const bad = {...exported, manifest: {...exported.manifest, embed_dim: exported.manifest.embed_dim + 1}};
    let renderer;
    await act(async () => {
      renderer = TestRenderer.create(React.createElement(Probe, {options: bad, states}));
    });
    await waitFor(() => states[states.length - 1].status === 'error', 'error');
    const last = states[states.length - 1];
    assert.ok(last.error instanceof BioClipError, String(last.error));
    assert.strictEqual(last.model, null);
    await act(async () => renderer.unmount());
    assert.strictEqual(tf.memory().numTensors, baseline);
  });

  // An app's bundled label bank is an asset whose bytes arrive asynchronously, so the options
  // themselves can be a promise or an (async) factory.
  await t.test('an async options factory: called once, its options loaded; the same answers as plain options', async () => {
    const states = [];
    let calls = 0;
    const factory = async () => {
      calls += 1;
      await sleep(50);  // e.g. reading label_bank.bin from the app bundle
      return exported;
    };
    let renderer;
    await act(async () => {
      renderer = TestRenderer.create(React.createElement(Probe, {options: factory, states}));
    });
    await waitFor(() => states[states.length - 1].status === 'ready', 'ready');
    assert.strictEqual(calls, 1);
    const {model} = states[states.length - 1];
    const square = h.decodeJpeg('square_a');
    const direct = await require('react-bio-clip').load(exported);
    assert.deepStrictEqual(Array.from(model.embed(square)), Array.from(direct.embed(square)));
    direct.dispose();
    // A re-render with the same factory does not reload.
    await act(async () => renderer.update(React.createElement(Probe, {options: factory, states})));
    await sleep(100);
    assert.strictEqual(calls, 1);
    assert.strictEqual(states[states.length - 1].model, model);
    await act(async () => renderer.unmount());
    assert.strictEqual(tf.memory().numTensors, baseline);
  });

  await t.test('a promise of options loads; a rejecting factory gives status "error" with its error', async () => {
    const states = [];
    const promise = Promise.resolve(exported);
    let renderer;
    await act(async () => {
      renderer = TestRenderer.create(React.createElement(Probe, {options: promise, states}));
    });
    await waitFor(() => states[states.length - 1].status === 'ready', 'ready');
    const failure = new Error('asset not found');
    const failing = async () => {
      throw failure;
    };
    await act(async () => renderer.update(React.createElement(Probe, {options: failing, states})));
    await waitFor(() => states[states.length - 1].status === 'error', 'error');
    assert.strictEqual(states[states.length - 1].error, failure);
    await act(async () => renderer.unmount());
    assert.strictEqual(tf.memory().numTensors, baseline, 'the promise\'s model is disposed when the source changes');
  });

  await t.test('unmounting while the factory is pending: nothing is loaded, nothing leaks', async () => {
    const states = [];
    const model = countingModel(exported.model);
    let release;
    const gate = new Promise((resolve) => {
      release = resolve;
    });
    const factory = async () => {
      await gate;
      return {...exported, model};
    };
    let renderer;
    await act(async () => {
      renderer = TestRenderer.create(React.createElement(Probe, {options: factory, states}));
    });
    await act(async () => renderer.unmount());
    release();
    await sleep(200);
    assert.strictEqual(model.loads, 0, 'a load after unmount would only be disposed again');
    assert.strictEqual(tf.memory().numTensors, baseline);
    assert.ok(states.every((s) => s.status === 'loading'));
  });
});
