'use strict';
// Nothing leaks: tf.memory().numTensors is unchanged after 1,000 classify calls, sequential and
// with many in flight at once, on both backends, with every input kind and option.
const test = require('node:test');
const assert = require('node:assert');
const tf = require('@tensorflow/tfjs');
const {loadFromDirectory} = require('react-bio-clip/node');
const h = require('./helpers');

for (const backend of h.BACKENDS) {
  test(`no tensor leaks over 1,000 classify calls on ${backend}`, async () => {
    await h.useBackend(backend);
    const bioClip = await loadFromDirectory(h.SMALL_DIR);
    const R = bioClip.resolution;
    const square = h.decodeJpeg('square_a');                       // 224 x 224 RGB: resized
    const rgba = {data: new Uint8ClampedArray(R * R * 4).fill(90), width: R, height: R};  // exact size, RGBA
    await bioClip.addTaxon('backyard robin', [square]);
    await bioClip.addTaxon('backyard crow', [rgba]);
    const frame = tf.tensor3d(square.data, [square.height, square.width, 3], 'int32');  // caller-owned
    const options = [{}, {topK: 3, ranks: ['genus']}, {restrictTo: ['Aves']}, {threshold: 0.9}];
    const inputs = [square, rgba, frame];
    // One call per option first: a restrictTo list keeps its mask on the device (a cache, freed
    // by dispose), which must not count as a leak.
    for (const o of options) await bioClip.classify(square, o);
    const baseline = tf.memory();

    for (let i = 0; i < 600; ++i) {
      const result = await bioClip.classify(inputs[i % 3], options[i % 4]);
      if (i === 0) assert.strictEqual(result.userTaxa.length, 2);
    }
    assert.strictEqual(tf.memory().numTensors, baseline.numTensors, 'sequential calls leaked tensors');

    for (let round = 0; round < 20; ++round) {  // 400 more, 20 in flight at a time
      await Promise.all(Array.from({length: 20}, (_, j) => bioClip.classify(inputs[j % 3], options[(round + j) % 4])));
    }
    assert.strictEqual(tf.memory().numTensors, baseline.numTensors, 'concurrent calls leaked tensors');
    assert.strictEqual(tf.memory().numBytes, baseline.numBytes);

    for (let i = 0; i < 20; ++i) bioClip.embed(inputs[i % 3]);
    await assert.rejects(bioClip.classify({data: new Uint8Array(5), width: 2, height: 2}));
    assert.strictEqual(tf.memory().numTensors, baseline.numTensors, 'embed or a rejected call leaked');
    assert.ok(!frame.isDisposed, 'classify must not dispose the caller\'s tensor');

    // More distinct checklists than the cache holds: evicted masks are freed.
    const checklists = ['Aves', 'Mammalia', 'Insecta', 'Plantae', 'Turdus', 'Corvus', 'Canis', 'Vulpes', 'Danaus', 'Rosa', 'Animalia', 'Chordata'];
    for (const name of checklists) await bioClip.classify(rgba, {restrictTo: name});
    assert.ok(tf.memory().numTensors <= baseline.numTensors - 1 + 8, `${tf.memory().numTensors - baseline.numTensors} extra tensors`);

    frame.dispose();
    bioClip.dispose();
    assert.strictEqual(tf.memory().numTensors, 0, 'dispose() must free the model, label bank and prototypes');
  });
}
