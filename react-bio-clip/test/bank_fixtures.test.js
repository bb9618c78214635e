'use strict';
// Banks written by the Python writer (scripts/make_bank_fixtures.py: int8, int4, float16 and
// projected int4 / int8) read and scored by the package: the names Python wrote, and
// probabilities equal to a softmax of the cosines Python's reader reconstructs.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');
const {load} = require('react-bio-clip');
const {readExportDirectory, readLabelsDirectory} = require('react-bio-clip/node');
const h = require('./helpers');

const BANKS = path.join(__dirname, 'fixtures', 'banks');
const expected = JSON.parse(fs.readFileSync(path.join(BANKS, 'expected.json'), 'utf8'));

for (const [variant, want] of Object.entries(expected.variants)) {
  test(`Python-written ${variant} bank`, async () => {
    await h.useBackend('cpu');
    const {model} = await readExportDirectory(h.SMALL_DIR);
    const dir = path.join(BANKS, variant);
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'label_bank.json'), 'utf8'));
    const manifest = {...h.fixtureManifest(), files: undefined, label_bank: {num_species: json.num_species, dtype: json.rows.dtype}};
    const bioClip = await load({model, labels: await readLabelsDirectory(dir), manifest, skipWarmup: true});
    const n = want.species.length;
    for (const [qi, query] of expected.queries.entries()) {
      const cos = want.cosines[qi];
      const max = Math.max(...cos);
      const e = cos.map((c) => Math.exp(json.logit_scale * (c - max)));
      const total = e.reduce((a, b) => a + b, 0);
      const r = await bioClip.classifyEmbedding(Float32Array.from(query), {topK: n});
      assert.strictEqual(r.species.length, n);
      for (const s of r.species) {
        assert.strictEqual(s.taxon, want.species[s.index], `${variant}: name of row ${s.index}`);
        assert.strictEqual(s.commonName, want.common_names[s.index] || null);
        assert.ok(Math.abs(s.probability - e[s.index] / total) < 1e-5, `${variant} q${qi} row ${s.index}: ${s.probability} vs ${e[s.index] / total}`);
      }
      assert.ok(Math.abs(r.similarity - max) < 1e-5, `${variant}: similarity ${r.similarity} vs ${max}`);
      const genus = r.ranks.genus[0];
      assert.strictEqual(genus.taxon, want.genus[genus.index]);
    }
    bioClip.dispose();
  });
}
