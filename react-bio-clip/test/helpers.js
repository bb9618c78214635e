'use strict';
// Shared test helpers. Tests run on the compiled package (dist/) through its own exports map,
// with the real @tensorflow/tfjs (cpu and wasm backends) and the real fixture export.
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const jpeg = require('jpeg-js');

// REACT_BIO_CLIP_FIXTURES points the tests at a freshly made fixture (make_fixture.py
// --out_dir=...), so a change in the Python export stage is caught without committing a new one.
const FIXTURES = process.env.REACT_BIO_CLIP_FIXTURES ? path.resolve(process.env.REACT_BIO_CLIP_FIXTURES)
                                                     : path.join(__dirname, 'fixtures');
const EXPORT_DIR = path.join(FIXTURES, 'export');
/** The same kind of export at a small resolution: for tests that run the model many times. */
const SMALL_DIR = path.join(FIXTURES, 'export_small');
const BACKENDS = ['cpu', 'wasm'];

async function useBackend(name) {
  if (name === 'wasm') require('@tensorflow/tfjs-backend-wasm');
  if (!(await tf.setBackend(name))) throw new Error(`backend ${name} did not initialise`);
  await tf.ready();
}

function expected() {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8'));
}

/** jpeg-js decode of a fixture photo: {data: Uint8Array RGB, width, height}. */
function decodeJpeg(name) {
  const decoded = jpeg.decode(fs.readFileSync(path.join(FIXTURES, 'photos', name + '.jpg')),
                              {useTArray: true, formatAsRGBA: false});
  return {data: decoded.data, width: decoded.width, height: decoded.height};
}

/** A raw uint8 RGB file written by make_fixture.py. */
function readRgb(file, width, height) {
  const data = new Uint8Array(fs.readFileSync(path.join(FIXTURES, 'photos', file)));
  if (data.length !== width * height * 3) throw new Error(`${file}: ${data.length} bytes is not ${width}x${height}x3`);
  return {data, width, height};
}

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; ++i) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

function fixtureManifest(dir = SMALL_DIR) {
  return JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
}

const RANKS = ['kingdom', 'phylum', 'class', 'order', 'family', 'genus', 'species'];

/**
 * A hand-checkable label bank of float32 text embeddings, for the fixture model's width D.
 * species: [[7 lineage words], common name, weight]. With logit_scale s and the query e0 (unit
 * vector on axis 0), species j gets cosine offset + ln(w_j)/s, so its probability is w_j / sum(w)
 * (the softmax does not see a common offset). The offset keeps the cosines above the default
 * species similarity floor, as a real photo's best match would be.
 */
function handBank(species, embedDim, logitScale = 10, offset = 0.5) {
  const taxa = {};
  const rowOf = {};
  for (const rank of RANKS) {
    taxa[rank] = {names: [], parents: [], common_names: []};
    rowOf[rank] = new Map();
  }
  for (const [lineage, common] of species) {
    let parent = -1;
    RANKS.forEach((rank, depth) => {
      const name = lineage.slice(0, depth + 1).join(' ');
      if (!rowOf[rank].has(name)) {
        rowOf[rank].set(name, taxa[rank].names.length);
        taxa[rank].names.push(name);
        taxa[rank].parents.push(parent);
        taxa[rank].common_names.push(rank === 'species' ? common : '');
      }
      parent = rowOf[rank].get(name);
    });
  }
  const n = species.length;
  const rows = new Float32Array(n * embedDim);
  species.forEach(([, , weight], j) => {
    const c = offset + Math.log(weight) / logitScale;
    if (!(Math.abs(c) <= 1)) throw new Error(`handBank: weight ${weight} gives cosine ${c}`);
    rows[j * embedDim] = c;
    rows[j * embedDim + 1 + (j % (embedDim - 1))] = Math.sqrt(1 - c * c);
  });
  const json = {
    format_version: 1, embed_dim: embedDim, dtype: 'float32', logit_scale: logitScale, ranks: RANKS, taxa,
    species_embeddings: {file: 'label_bank.bin', offset: 0, shape: [n, embedDim]},
  };
  const manifest = fixtureManifest();
  // The bank is new, so the manifest cannot hold its hashes; the model's stay unchecked here.
  delete manifest.files;
  manifest.label_bank = {num_species: n, dtype: 'float32'};
  return {json, bin: new Uint8Array(rows.buffer), manifest};
}

/** The unit vector on axis 0: the query embedding of handBank. */
function axis0(embedDim) {
  const e = new Float32Array(embedDim);
  e[0] = 1;
  return e;
}

module.exports = {
  FIXTURES, EXPORT_DIR, SMALL_DIR, BACKENDS, RANKS, useBackend, expected, decodeJpeg, readRgb, cosine,
  fixtureManifest, handBank, axis0,
};
