'use strict';
// The label bank is scored in its stored precision, chunk by chunk, in plain JS. Here that
// equals a brute-force float64 reference written independently in this file (rows decoded from
// the raw bytes, reconstructed in the model's space, a plain softmax, rank sums grouped by the
// lineage name strings) for int8, int4, float16, float32 and a projected bank, over more species
// than one chunk; restrictTo scores only the allowed rows; the bank never becomes a float copy
// or a tensor.
const test = require('node:test');
const assert = require('node:assert');
const tf = require('@tensorflow/tfjs');
const {load} = require('react-bio-clip');
const {readExportDirectory} = require('react-bio-clip/node');
const {LabelBank, SCORE_CHUNK_ROWS} = require('../dist/label_bank');
const h = require('./helpers');

/** Deterministic uniform [0, 1) (mulberry32). */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(rand) {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

function unit(v) {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

/**
 * n species in a tree (2 kingdoms, ..., genera of ~10 species), each row near its genus' centre
 * and the genus near its family's (the structure of real text embeddings). Rows: float32 [n*D].
 */
function structuredBank(n, D, seed) {
  const rand = rng(seed);
  const lineages = [];
  const rows = new Float32Array(n * D);
  const centre = new Map();
  const near = (key, parentKey, spread) => {
    if (!centre.has(key)) {
      const base = parentKey ? centre.get(parentKey) : new Array(D).fill(0);
      centre.set(key, base.map((x) => x + spread * gaussian(rand)));
    }
    return key;
  };
  for (let s = 0; s < n; ++s) {
    const g = Math.floor(s / 10);
    const words = [`King${g % 2}`, `Phy${g % 5}`, `Cla${g % 11}`, `Ord${g % 23}`, `Fam${Math.floor(g / 3)}`, `Gen${g}`, `sp${s}`];
    lineages.push(words);
    let key = '';
    let parent = '';
    words.slice(0, 6).forEach((w, depth) => {
      key = `${key} ${w}`;
      near(key, parent, depth < 4 ? 1 : 0.6);
      parent = key;
    });
    const row = unit(centre.get(key).map((x) => x + 0.5 * gaussian(rand)));
    rows.set(row, s * D);
  }
  return {lineages, rows};
}

function halfToNumber(bits) {
  const exp = (bits >> 10) & 31;
  const frac = bits & 1023;
  const sign = bits & 0x8000 ? -1 : 1;
  if (exp === 0) return sign * frac * 2 ** -24;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** The rows the device scores against, in the model's space, float64 [n][D], from the raw bytes. */
function referenceRows(json, bin) {
  const {dtype, stored_dim: d, offset} = json.rows;
  const n = json.num_species;
  const D = json.embed_dim;
  const dv = new DataView(bin.buffer, bin.byteOffset, bin.byteLength);
  const stored = [];
  for (let s = 0; s < n; ++s) {
    const row = [];
    for (let j = 0; j < d; ++j) {
      if (dtype === 'int8') row.push(dv.getInt8(offset + s * d + j) * dv.getFloat32(json.rows.scales_offset + 4 * s, true));
      else if (dtype === 'int4') {
        const width = Math.ceil(d / 2);
        const byte = dv.getUint8(offset + s * width + Math.floor(j / 2));
        let v = j % 2 === 0 ? byte & 15 : byte >> 4;
        if (v > 7) v -= 16;
        row.push(v * dv.getFloat32(json.rows.scales_offset + 4 * s, true));
      } else if (dtype === 'float16') row.push(halfToNumber(dv.getUint16(offset + 2 * (s * d + j), true)));
      else row.push(dv.getFloat32(offset + 4 * (s * d + j), true));
    }
    stored.push(row);
  }
  if (!json.projection) return stored;
  const p = json.projection;
  const P = (i, j) => dv.getFloat32(p.offset + 4 * (i * d + j), true);
  const mean = (i) => dv.getFloat32(p.mean_offset + 4 * i, true);
  return stored.map((row) => Array.from({length: D}, (_, i) => mean(i) + row.reduce((acc, v, j) => acc + P(i, j) * v, 0)));
}

/** Brute force: probabilities of every species and every taxon (by lineage name). */
function reference(json, rows, lineages, query, allowed = null, prior = null) {
  const scale = json.logit_scale;
  const cos = rows.map((row) => row.reduce((acc, v, i) => acc + v * query[i], 0));
  const live = cos.map((_, s) => (!allowed || allowed(s)) && (!prior || prior[s] > 0));
  const logits = cos.map((c, s) => (live[s] ? scale * c + (prior ? Math.log(prior[s]) : 0) : -Infinity));
  const max = Math.max(...logits);
  const e = logits.map((l) => Math.exp(l - max));
  const total = e.reduce((a, b) => a + b, 0);
  const probs = e.map((x) => x / total);
  const byName = h.RANKS.map(() => new Map());
  lineages.forEach((words, s) => h.RANKS.forEach((_, depth) => {
    const name = words.slice(0, depth + 1).join(' ');
    byName[depth].set(name, (byName[depth].get(name) ?? 0) + probs[s]);
  }));
  const similarity = Math.max(...cos.filter((_, s) => live[s]));
  return {probs, byName, similarity};
}

function checkAgainst(r, ref, lineages, what) {
  const order = ref.probs.map((p, s) => [p, s]).sort((a, b) => b[0] - a[0]);
  // Near-ties can swap: compare each returned species' probability with the reference's, and
  // the returned list with the reference's top-K as values.
  r.species.forEach((sp, j) => {
    assert.strictEqual(sp.taxon, lineages[sp.index].join(' '), `${what}: species ${j} name`);
    assert.ok(Math.abs(sp.probability - ref.probs[sp.index]) < 1e-6, `${what}: p(${sp.taxon}) ${sp.probability} vs ${ref.probs[sp.index]}`);
    assert.ok(Math.abs(sp.probability - order[j][0]) < 1e-6, `${what}: top ${j} is ${sp.probability}, reference ${order[j][0]}`);
  });
  h.RANKS.forEach((rank, depth) => {
    const sorted = [...ref.byName[depth].values()].sort((a, b) => b - a);
    r.ranks[rank].forEach((t, j) => {
      assert.ok(Math.abs(t.probability - ref.byName[depth].get(t.taxon)) < 1e-6, `${what}: ${rank} ${t.taxon}`);
      assert.ok(Math.abs(t.probability - sorted[j]) < 1e-6, `${what}: ${rank} top ${j}`);
    });
  });
  assert.ok(Math.abs(r.similarity - ref.similarity) < 1e-5, `${what}: similarity ${r.similarity} vs ${ref.similarity}`);
}

const N = SCORE_CHUNK_ROWS + 904;  // more than one chunk, and a partial last chunk

// 'auto': int8 rows of a width that is a multiple of 16 go to the WebAssembly SIMD kernel
// (exact integer dot products on a two-term int16 query); 'off': plain JS (Hermes).
for (const wasm of ['auto', 'off']) test(`chunked scoring equals brute-force float scoring (wasm ${wasm})`, async (t) => {
  LabelBank.wasm = wasm;
  t.after(() => { LabelBank.wasm = 'auto'; });
  await h.useBackend('cpu');
  const {model} = await readExportDirectory(h.SMALL_DIR);
  const manifest = h.fixtureManifest();
  delete manifest.files;
  const D = manifest.embed_dim;
  const {lineages, rows} = structuredBank(N, D, 7);
  const commons = lineages.map((_, s) => (s % 3 ? `common ${s}` : ''));
  // A projection onto 12 orthonormal directions (Gram-Schmidt of random vectors) and a mean.
  const rand = rng(3);
  const d = 12;
  const basis = [];
  while (basis.length < d) {
    let v = Array.from({length: D}, () => gaussian(rand));
    for (const b of basis) {
      const dot = v.reduce((acc, x, i) => acc + x * b[i], 0);
      v = v.map((x, i) => x - dot * b[i]);
    }
    basis.push(unit(v));
  }
  const matrix = new Float32Array(D * d);
  for (let i = 0; i < D; ++i) for (let j = 0; j < d; ++j) matrix[i * d + j] = basis[j][i];
  const mean = Float32Array.from({length: D}, () => 0.05 * gaussian(rand));

  const variants = [['int8'], ['int4'], ['float16'], ['float32'], ['int8', {matrix, mean}], ['int4', {matrix, mean}]];
  const queries = [0, 1].map((q) => Float32Array.from(unit(Array.from({length: D}, () => gaussian(rand)))));
  queries.push(rows.slice(17 * D, 18 * D));  // a species' own row: a confident answer
  for (const [dtype, projection] of variants) {
    const what = `${dtype}${projection ? ' projected' : ''}`;
    await t.test(what, async () => {
      const labels = h.encodeBank(lineages, commons, rows, D, {dtype, logitScale: 30, projection});
      manifest.label_bank = {num_species: N, dtype};
      const bioClip = await load({model, labels, manifest, skipWarmup: true});
      assert.strictEqual(bioClip.bank.kernel !== null, wasm === 'auto' && dtype === 'int8' && !projection, 'which path scores');
      const ref = referenceRows(labels.json, labels.bin);
      for (const [qi, query] of queries.entries()) {
        const r = await bioClip.classifyEmbedding(query, {topK: 8});
        checkAgainst(r, reference(labels.json, ref, lineages, query), lineages, `${what} query ${qi}`);
        assert.strictEqual(r.species[0].commonName, r.species[0].index % 3 ? `common ${r.species[0].index}` : null);
      }
      // restrictTo: the reference over the allowed species only
      const allowedFamily = lineages[1234].slice(0, 5).join(' ');
      const allowedGenus = lineages[4500].slice(0, 6).join(' ');
      const r = await bioClip.classifyEmbedding(queries[0], {topK: 5, restrictTo: [allowedFamily, allowedGenus]});
      const allowed = (s) => lineages[s].join(' ').startsWith(allowedFamily + ' ') || lineages[s].join(' ').startsWith(allowedGenus + ' ');
      checkAgainst(r, reference(labels.json, ref, lineages, queries[0], allowed), lineages, `${what} restricted`);
      bioClip.dispose();
    });
  }
});

test('the bank stays in its stored bytes: no float32 copy, no tensor', async () => {
  await h.useBackend('cpu');
  const {model} = await readExportDirectory(h.SMALL_DIR);
  const manifest = h.fixtureManifest();
  delete manifest.files;
  const D = manifest.embed_dim;
  const {lineages, rows} = structuredBank(N, D, 11);
  manifest.label_bank = {num_species: N, dtype: 'int8'};
  const labels = h.encodeBank(lineages, [], rows, D, {dtype: 'int8'});
  const tiny = h.encodeBank(lineages.slice(0, 1), [], rows.slice(0, D), D, {dtype: 'int8'});
  let before = tf.memory().numBytes;
  const bioClip = await load({model: (await readExportDirectory(h.SMALL_DIR)).model, labels, manifest, skipWarmup: true});
  const withBig = tf.memory().numBytes - before;
  before = tf.memory().numBytes;
  const small = await load({model, labels: tiny, manifest: {...manifest, label_bank: {num_species: 1, dtype: 'int8'}}, skipWarmup: true});
  const withTiny = tf.memory().numBytes - before;
  // Both hold the model's weights in tensors; a bank of N species adds nothing there.
  assert.ok(withTiny > 0);
  assert.strictEqual(withBig, withTiny, `${N} species: ${withBig} tensor bytes, 1 species: ${withTiny}`);
  const bank = bioClip.bank;
  // The rows stay int8 [N * D]: a view of label_bank.bin, or (WebAssembly) of the kernel's memory.
  assert.ok(bank.rows instanceof Int8Array);
  assert.strictEqual(bank.rows.length, N * D);
  assert.ok(bank.rows.buffer === labels.bin.buffer || (bank.kernel && bank.rows === bank.kernel.rows));
  assert.ok(!Object.values(bank).some((v) => v instanceof Float32Array && v.length >= N * D), 'no float32 copy of the rows');
  bioClip.dispose();
  small.dispose();
});

test('restrictTo scores only the allowed rows, gathered once per list', async (t) => {
  LabelBank.wasm = 'off';  // count the plain-JS scorer's rows (the kernel scores only the whole bank)
  t.after(() => { LabelBank.wasm = 'auto'; });
  await h.useBackend('cpu');
  const {model} = await readExportDirectory(h.SMALL_DIR);
  const manifest = h.fixtureManifest();
  delete manifest.files;
  const D = manifest.embed_dim;
  const {lineages, rows} = structuredBank(N, D, 5);
  manifest.label_bank = {num_species: N, dtype: 'int8'};
  const bioClip = await load({model, labels: h.encodeBank(lineages, [], rows, D, {dtype: 'int8'}), manifest, skipWarmup: true});
  const bank = bioClip.bank;
  let scored = 0;
  const original = bank.scoreRows.bind(bank);
  bank.scoreRows = (prepared, species, start, end, out) => {
    scored += end - start;
    return original(prepared, species, start, end, out);
  };
  const genus = lineages[42].slice(0, 6).join(' ');
  const inGenus = lineages.filter((l) => l.slice(0, 6).join(' ') === genus).length;
  await bioClip.classifyEmbedding(rows.slice(0, D), {restrictTo: genus});
  assert.strictEqual(scored, inGenus, `a pack of ${inGenus} species scores ${inGenus} rows`);
  scored = 0;
  await bioClip.classifyEmbedding(rows.slice(0, D));
  assert.strictEqual(scored, N, 'no restriction: every row');
  const cached = bioClip.restrictions.size;
  await bioClip.classifyEmbedding(rows.slice(0, D), {restrictTo: genus});
  assert.strictEqual(bioClip.restrictions.size, cached, 'the same list reuses its gathered rows');
  bioClip.dispose();
});

// The WebAssembly kernel at BioCLIP's widths (512; BioCLIP 2's 768): its integer dot products on
// the two-term int16 query must equal float64 scoring of the same int8 rows to float32 rounding,
// for a query with a wide dynamic range (one large column, many tiny ones) as well as a unit one.
test('the int8 WebAssembly kernel equals float64 scoring at D = 512 and 768', async () => {
  for (const D of [512, 768]) {
    const n = SCORE_CHUNK_ROWS + 77;
    const {lineages, rows} = structuredBank(n, D, 11);
    const labels = h.encodeBank(lineages, lineages.map(() => ''), rows, D, {dtype: 'int8'});
    const files = {bin: labels.bin, names: labels.names, commonNames: labels.commonNames};
    LabelBank.wasm = 'auto';
    const bank = LabelBank.parse(labels.json, files, 'kernel test');
    assert.ok(bank.kernel !== null, `D=${D}: the kernel scores`);
    const ref = referenceRows(labels.json, labels.bin);
    const rand = rng(D);
    const wide = Float32Array.from({length: D}, (_, j) => (j === 5 ? 0.9 : 1e-4 * gaussian(rand)));
    for (const query of [Float32Array.from(unit(Array.from({length: D}, () => gaussian(rand)))), wide]) {
      const got = bank.cosines(query, null);
      let worst = 0;
      for (let s = 0; s < n; ++s) {
        let exact = 0, bound = 0;
        for (let j = 0; j < D; ++j) {
          exact += query[j] * ref[s][j];
          bound += Math.abs(query[j] * ref[s][j]);
        }
        worst = Math.max(worst, Math.abs(got[s] - exact) / bound);
      }
      assert.ok(worst < 1e-6, `D=${D}: kernel vs float64, worst error ${worst} of sum |q_j row_j|`);
    }
  }
});
