'use strict';
// The camera-path pixel references made by scripts/make_resize_reference.py (frames and the
// Python training input for each), and the comparison of the package's resize paths against
// them. Shared by test/resize_parity.test.js and bench/resize_parity.js.
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

function readReference(dir) {
  const meta = JSON.parse(fs.readFileSync(path.join(dir, 'frames.json'), 'utf8'));
  const R = meta.resolution;
  const frames = meta.frames.map((f) => ({
    ...f,
    rgb: () => new Uint8Array(fs.readFileSync(path.join(dir, f.name + '.rgb'))),
    train: () => {
      const buf = fs.readFileSync(path.join(dir, f.name + '.train.f32'));
      return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
    },
    pil: () => new Uint8Array(fs.readFileSync(path.join(dir, f.name + '.pil.u8'))),
  }));
  return {resolution: R, frames};
}

function diffStats(a, b) {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let sum = 0, max = 0;
  for (let i = 0; i < a.length; ++i) {
    const d = Math.abs(a[i] - b[i]);
    sum += d;
    if (d > max) max = d;
  }
  return {mean: sum / a.length, max};
}

/** The frame as an int32 [H, W, 3] tensor (a camera frame, tf.browser.fromPixels) or RGBA. */
function frameTensor(frame, pixels, {rgba = false, dtype = 'int32'} = {}) {
  const {height, width} = frame;
  if (!rgba) {
    const values = dtype === 'int32' ? new Int32Array(pixels) : new Float32Array(pixels);
    return tf.tensor3d(values, [height, width, 3], dtype);
  }
  const values = dtype === 'int32' ? new Int32Array(height * width * 4) : new Float32Array(height * width * 4);
  for (let i = 0, j = 0; i < pixels.length; i += 3, j += 4) {
    values[j] = pixels[i];
    values[j + 1] = pixels[i + 1];
    values[j + 2] = pixels[i + 2];
    values[j + 3] = 255;
  }
  return tf.tensor3d(values, [height, width, 4], dtype);
}

/**
 * Per resize path, |path(frame) - training input| in 0..255 levels.
 * 'bicubic' is squashResize (what the package and the camera component use now); 'area' and
 * 'bilinear' are the earlier paths (bilinear is what tfjs-react-native's camera texture resize
 * does: GL_LINEAR sampling, no antialiasing).
 */
function compareFrame(dist, frame, pixels, train, R, methods = ['bicubic', 'area', 'bilinear']) {
  const {squashResize} = dist.core;
  const {squash, toRgbFloat} = dist.preprocess;
  const input = frameTensor(frame, pixels);
  const out = {};
  try {
    for (const method of methods) {
      const values = tf.tidy(() => (method === 'bicubic' ? squashResize(input, R) : squash(toRgbFloat(input), R, method)).dataSync());
      out[method] = diffStats(values, train);
    }
  } finally {
    input.dispose();
  }
  return out;
}

module.exports = {readReference, diffStats, frameTensor, compareFrame};
