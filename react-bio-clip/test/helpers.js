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
function handBank(species, embedDim, logitScale = 10, offset = 0.5, extraTaxa = []) {
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
  const lineages = species.map(([lineage]) => lineage);
  const commons = species.map(([, common]) => common);
  const {json, bin, names, commonNames} = encodeBank(lineages, commons, rows, embedDim, {dtype: 'float32', logitScale, extraTaxa});
  const manifest = fixtureManifest();
  // The bank is new, so the manifest cannot hold its hashes; the model's stay unchecked here.
  delete manifest.files;
  manifest.label_bank = {num_species: n, dtype: 'float32'};
  return {json, bin, names, commonNames, manifest, labels: {json, bin, names, commonNames}};
}

/** Little-endian bytes of typed arrays, each part padded to 4 bytes. */
function concat4(parts) {
  const sizes = parts.map((p) => (p.byteLength + 3) & ~3);
  const out = new Uint8Array(sizes.reduce((a, b) => a + b, 0));
  const offsets = [];
  let at = 0;
  parts.forEach((p, i) => {
    offsets.push(at);
    out.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), at);
    at += sizes[i];
  });
  return {bytes: out, offsets};
}

/** Offsets uint32 [n + 1] and the '\n'-terminated UTF-8 blob of strings (names.bin layout). */
function stringPart(strings) {
  const encoded = strings.map((s) => Buffer.from(s + '\n', 'utf8'));
  const offsets = new Uint32Array(strings.length + 1);
  encoded.forEach((e, i) => { offsets[i + 1] = offsets[i] + e.length; });
  return {offsets, blob: new Uint8Array(Buffer.concat(encoded))};
}

/**
 * TEST-ONLY encoder of a version-2 device label bank (docs/FORMATS.md section 4), for banks
 * whose rows a test chooses (formats/device_label_bank.py is the one real writer; the fixture
 * exports are written by it). lineages: [7 words] per species; rows: float32 [n * D] in the
 * model's space. dtype 'float32' | 'float16' | 'int8' | 'int4' quantizes them as the Python
 * writer does (per-row symmetric scale); projection {matrix: float32 [D * d], mean: [D]} stores
 * P^T (x - mean) instead. Returns {json, bin, names, commonNames (null when all are '')}.
 */
function encodeBank(lineages, commons, rows, embedDim, {dtype = 'float32', logitScale = 10, projection = null, extraTaxa = []} = {}) {
  const tables = RANKS.map(() => ({names: [], leaves: [], parents: [], commons: [], rowOf: new Map()}));
  lineages.forEach((lineage, s) => {
    let parent = -1;
    RANKS.forEach((rank, depth) => {
      const name = lineage.slice(0, depth + 1).join(' ');
      const t = tables[depth];
      if (!t.rowOf.has(name)) {
        t.rowOf.set(name, t.names.length);
        t.names.push(name);
        t.leaves.push(lineage[depth]);
        t.parents.push(parent);
        t.commons.push(rank === 'species' ? (commons[s] || '') : '');
      }
      parent = t.rowOf.get(name);
    });
  });
  // Taxa without species (their lineage words, kingdom first), appended after the others.
  for (const words of extraTaxa) {
    const depth = words.length - 1;
    const t = tables[depth];
    t.rowOf.set(words.join(' '), t.names.length);
    t.names.push(words.join(' '));
    t.leaves.push(words[depth]);
    t.parents.push(depth === 0 ? -1 : tables[depth - 1].rowOf.get(words.slice(0, -1).join(' ')));
    t.commons.push('');
  }
  const n = lineages.length;
  const D = embedDim;
  const d = projection ? projection.matrix.length / D : D;
  let stored = rows;
  if (projection) {
    stored = new Float32Array(n * d);
    for (let s = 0; s < n; ++s) {
      for (let j = 0; j < d; ++j) {
        let acc = 0;
        for (let i = 0; i < D; ++i) acc += (rows[s * D + i] - projection.mean[i]) * projection.matrix[i * d + j];
        stored[s * d + j] = acc;
      }
    }
  }
  const parts = [];
  let scales = null;
  if (dtype === 'int8' || dtype === 'int4') {
    const levels = dtype === 'int8' ? 127 : 7;
    scales = new Float32Array(n);
    const q = new Int8Array(n * d);
    for (let s = 0; s < n; ++s) {
      let max = 0;
      for (let j = 0; j < d; ++j) max = Math.max(max, Math.abs(stored[s * d + j]));
      scales[s] = Math.fround(max / levels);
      const safe = scales[s] > 0 ? scales[s] : 1;
      for (let j = 0; j < d; ++j) q[s * d + j] = Math.max(-levels, Math.min(levels, Math.round(stored[s * d + j] / safe)));
    }
    if (dtype === 'int8') {
      parts.push(q);
    } else {
      const width = Math.ceil(d / 2);
      const packed = new Uint8Array(n * width);
      for (let s = 0; s < n; ++s) {
        for (let j = 0; j < d; ++j) packed[s * width + (j >> 1)] |= (q[s * d + j] & 15) << ((j & 1) * 4);
      }
      parts.push(packed);
    }
    parts.push(scales);
  } else if (dtype === 'float16') {
    parts.push(Uint16Array.from(stored, toHalf));
  } else {
    parts.push(Float32Array.from(stored));
  }
  if (projection) parts.push(Float32Array.from(projection.matrix), Float32Array.from(projection.mean));
  const bin = concat4(parts);
  const rowsJson = {file: 'label_bank.bin', dtype, stored_dim: d, offset: 0, bytes: parts[0].byteLength};
  if (scales) rowsJson.scales_offset = bin.offsets[1];
  const namesParts = [];
  const commonParts = [];
  tables.forEach((t) => {
    const leaves = stringPart(t.leaves);
    namesParts.push(Int32Array.from(t.parents), leaves.offsets, leaves.blob);
    const c = stringPart(t.commons);
    commonParts.push(c.offsets, c.blob);
  });
  const namesBin = concat4(namesParts);
  const commonBin = concat4(commonParts);
  const hasCommon = tables.some((t) => t.commons.some((c) => c));
  const json = {
    format: 'bioclip-lite-device-label-bank', format_version: 2, embed_dim: D, dtype, logit_scale: logitScale,
    ranks: RANKS, teacher: {}, counts: Object.fromEntries(RANKS.map((r, i) => [r, tables[i].names.length])),
    num_species: n, rows: rowsJson,
    projection: projection ? {file: 'label_bank.bin', offset: bin.offsets[parts.length - 2], shape: [D, d],
                              mean_offset: bin.offsets[parts.length - 1]} : null,
    names: {file: 'names.bin', ranks: Object.fromEntries(RANKS.map((r, i) => [r, {
      parents_offset: namesBin.offsets[3 * i], offsets_offset: namesBin.offsets[3 * i + 1],
      blob_offset: namesBin.offsets[3 * i + 2], blob_bytes: namesParts[3 * i + 2].byteLength}]))},
    common_names: hasCommon ? {file: 'common_names.bin', ranks: Object.fromEntries(RANKS.map((r, i) => [r, {
      offsets_offset: commonBin.offsets[2 * i], blob_offset: commonBin.offsets[2 * i + 1],
      blob_bytes: commonParts[2 * i + 1].byteLength}]))} : null,
  };
  return {json, bin: bin.bytes, names: namesBin.bytes, commonNames: hasCommon ? commonBin.bytes : null, tables};
}

/** float -> IEEE half bits, round to nearest even (normal and subnormal range). */
function toHalf(value) {
  const f = new Float32Array([value]);
  const x = new Uint32Array(f.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rest > mid || (rest === mid && (half & 1))) half += 1;
    return sign | half;
  }
  let half = (e << 10) | (mant >> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1))) half += 1;
  return sign | half;
}

/**
 * "Genus epithet" of species row `index` of an export's bank, read straight from names.bin by
 * its documented layout (docs/FORMATS.md section 4), not through the package.
 */
function speciesShortName(exportDir, index) {
  const json = JSON.parse(fs.readFileSync(path.join(exportDir, 'labels', 'label_bank.json'), 'utf8'));
  const names = fs.readFileSync(path.join(exportDir, 'labels', json.names.file));
  const entry = (rank, i) => {
    const part = json.names.ranks[rank];
    const start = names.readUInt32LE(part.offsets_offset + 4 * i);
    const end = names.readUInt32LE(part.offsets_offset + 4 * (i + 1)) - 1;
    return names.subarray(part.blob_offset + start, part.blob_offset + end).toString('utf8');
  };
  const genus = names.readInt32LE(json.names.ranks.species.parents_offset + 4 * index);
  return `${entry('genus', genus)} ${entry('species', index)}`;
}

/** The unit vector on axis 0: the query embedding of handBank. */
function axis0(embedDim) {
  const e = new Float32Array(embedDim);
  e[0] = 1;
  return e;
}

module.exports = {
  FIXTURES, EXPORT_DIR, SMALL_DIR, BACKENDS, RANKS, useBackend, expected, decodeJpeg, readRgb, cosine,
  fixtureManifest, handBank, axis0, encodeBank, toHalf, speciesShortName,
};
