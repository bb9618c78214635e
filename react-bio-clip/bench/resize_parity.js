#!/usr/bin/env node
'use strict';
/**
 * Camera-path pixels before and after: each resize path of the package against the student's
 * training input (bioclip_lite_tf.model.layers.squash_resize), in 0..255 levels.
 *
 *   python react-bio-clip/scripts/make_resize_reference.py --out_dir=DIR    (from the repo root)
 *   node bench/resize_parity.js --reference_dir=DIR [--out=../bench/results/resize_parity.json]
 *
 * Paths: 'bicubic' = squashResize (now the default, and what the camera component calls);
 * 'area' = the earlier default for photos; 'bilinear' = tfjs-react-native's camera texture
 * resize (GL_LINEAR, no antialiasing) and load({resize: 'bilinear'}). Also the teacher's
 * resize (PIL bicubic, uint8) against the same training input, and squashResize's time per
 * frame (median of --runs; a measurement, not asserted anywhere).
 */
const fs = require('fs');
const os = require('os');
const path = require('path');
const tf = require('@tensorflow/tfjs');
require('@tensorflow/tfjs-backend-wasm');
const core = require('../dist');
const preprocess = require('../dist/preprocess');
const ref = require('../test/resize_reference');

const args = Object.fromEntries(process.argv.slice(2).map((a) => {
  const m = /^--([a-z_]+)=(.*)$/.exec(a);
  if (!m || !['reference_dir', 'out', 'backends', 'runs'].includes(m[1])) {
    process.stderr.write(`unknown argument ${a}\nusage: node bench/resize_parity.js --reference_dir=DIR [--out=FILE] [--backends=cpu,wasm] [--runs=3]\n`);
    process.exit(2);
  }
  return [m[1], m[2]];
}));
if (!args.reference_dir) {
  process.stderr.write('--reference_dir is required\n');
  process.exit(2);
}
const out = args.out ?? path.join(__dirname, '..', '..', 'bench', 'results', 'resize_parity.json');
const backends = (args.backends ?? 'cpu,wasm').split(',');
const runs = Number(args.runs ?? 3);

async function main() {
  const {resolution: R, frames} = ref.readReference(args.reference_dir);
  const result = {
    what: 'mean and max |resize(frame) - training input| in 0..255 levels; training input = bioclip_lite_tf.model.layers.squash_resize (tf.image.resize bicubic antialias, clipped, float)',
    command: 'node bench/resize_parity.js --reference_dir=DIR (DIR from scripts/make_resize_reference.py)',
    resolution: R, tfjs: tf.version.tfjs, node: process.version, cpu: os.cpus()[0]?.model ?? 'unknown',
    frames: {},
  };
  for (const frame of frames) {
    const pixels = frame.rgb();
    const train = frame.train();
    const entry = {height: frame.height, width: frame.width, texture: frame.texture,
                   teacher_pil_bicubic_uint8: ref.diffStats(frame.pil(), train), backends: {}};
    for (const backend of backends) {
      if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} did not initialise`);
      await tf.ready();
      const stats = ref.compareFrame({core, preprocess}, frame, pixels, train, R);
      const input = ref.frameTensor(frame, pixels);
      const times = [];
      for (let i = 0; i < runs; ++i) {
        const start = performance.now();
        tf.tidy(() => core.squashResize(input, R).dataSync());
        times.push(performance.now() - start);
      }
      input.dispose();
      times.sort((a, b) => a - b);
      entry.backends[backend] = {...stats, squash_resize_ms_median: times[Math.floor(times.length / 2)]};
      process.stderr.write(`${frame.name} ${backend}: ${JSON.stringify(entry.backends[backend])}\n`);
    }
    result.frames[frame.name] = entry;
  }
  fs.mkdirSync(path.dirname(out), {recursive: true});
  fs.writeFileSync(out + '.tmp', JSON.stringify(result, null, 1) + '\n');
  fs.renameSync(out + '.tmp', out);
  process.stderr.write(`wrote ${out}\n`);
}

main().catch((e) => {
  process.stderr.write(`${e.stack ?? e}\n`);
  process.exit(1);
});
