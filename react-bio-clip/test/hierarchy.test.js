'use strict';
// Rank sums, `best`, restrictTo and the answer's shape, on a label bank whose probabilities are
// known by hand: for the query e0, species j has probability w_j / sum(w).
const test = require('node:test');
const assert = require('node:assert');
const tf = require('@tensorflow/tfjs');
const {load, BioClipInputError} = require('react-bio-clip');
const {readExportDirectory} = require('react-bio-clip/node');
const h = require('./helpers');

const SPECIES = [
  [['Animalia', 'Chordata', 'Aves', 'Passeriformes', 'Turdidae', 'Turdus', 'migratorius'], 'American robin', 3],
  [['Animalia', 'Chordata', 'Aves', 'Passeriformes', 'Turdidae', 'Turdus', 'merula'], 'Common blackbird', 3],
  [['Animalia', 'Chordata', 'Aves', 'Passeriformes', 'Corvidae', 'Corvus', 'corax'], 'Common raven', 2],
  [['Animalia', 'Chordata', 'Mammalia', 'Carnivora', 'Canidae', 'Canis', 'lupus'], 'Gray wolf', 1],
  [['Plantae', 'Tracheophyta', 'Magnoliopsida', 'Rosales', 'Rosaceae', 'Rosa', 'canina'], '', 1],
];
// By hand: species .3 .3 .2 .1 .1; genus Turdus .6; family Turdidae .6; order Passeriformes .8;
// class Aves .8; phylum Chordata .9; kingdom Animalia .9.

const close = (actual, expected, what) => assert.ok(Math.abs(actual - expected) < 1e-5, `${what}: ${actual} != ${expected}`);

// The bank is scored in plain JS (no tensors), so the backends differ only in the embedding.
for (const backend of h.BACKENDS) {
  test(`hierarchy on ${backend}`, async (t) => {
    await h.useBackend(backend);
    const {model} = await readExportDirectory(h.SMALL_DIR);
    const bank = h.handBank(SPECIES, h.fixtureManifest().embed_dim);
    const bioClip = await load({model, labels: bank.labels, manifest: bank.manifest});
    const query = h.axis0(bioClip.embedDim);

    await t.test('species probabilities and rank sums', async () => {
      const r = await bioClip.classifyEmbedding(query, {topK: 5});
      assert.deepStrictEqual(r.species.map((s) => s.name), ['Turdus migratorius', 'Turdus merula', 'Corvus corax', 'Canis lupus', 'Rosa canina']
          .filter((_, i) => i < 5));
      [0.3, 0.3, 0.2, 0.1, 0.1].forEach((p, i) => close(r.species[i].probability, p, r.species[i].name));
      const top = (rank) => [r.ranks[rank][0].name, r.ranks[rank][0].probability];
      const expectTop = {kingdom: ['Animalia', 0.9], phylum: ['Chordata', 0.9], class: ['Aves', 0.8],
                         order: ['Passeriformes', 0.8], family: ['Turdidae', 0.6], genus: ['Turdus', 0.6]};
      for (const [rank, [name, p]] of Object.entries(expectTop)) {
        assert.strictEqual(top(rank)[0], name, rank);
        close(top(rank)[1], p, rank);
      }
      close(r.ranks.genus[1].probability, 0.2, 'Corvus');
      close(r.ranks.kingdom[1].probability, 0.1, 'Plantae');
      assert.strictEqual(r.ranks.kingdom.length, 2, 'a rank lists no more taxa than it has');
      const robin = r.species[0];
      assert.strictEqual(robin.taxon, 'Animalia Chordata Aves Passeriformes Turdidae Turdus migratorius');
      assert.strictEqual(robin.commonName, 'American robin');
      assert.strictEqual(r.species[4].commonName, null, 'an empty common name is null');
      assert.deepStrictEqual(robin.lineage.map((l) => l.name), ['Animalia', 'Chordata', 'Aves', 'Passeriformes', 'Turdidae', 'Turdus', 'Turdus migratorius']);
      assert.deepStrictEqual(robin.lineage.map((l) => l.rank), h.RANKS);
    });

    await t.test('best is the deepest rank that clears the threshold', async () => {
      const best = async (threshold) => (await bioClip.classifyEmbedding(query, {threshold})).best;
      let b = await best(0.5);
      assert.deepStrictEqual([b.rank, b.name], ['genus', 'Turdus']);
      close(b.probability, 0.6, 'genus Turdus');
      b = await best(0.7);
      assert.deepStrictEqual([b.rank, b.name], ['order', 'Passeriformes']);
      b = await best(0.85);
      assert.deepStrictEqual([b.rank, b.name], ['phylum', 'Chordata']);
      b = await best(0.25);
      assert.strictEqual(b.rank, 'species');
      assert.strictEqual(await best(0.95), null);
    });

    await t.test('ranks option limits the lists, not best', async () => {
      const r = await bioClip.classifyEmbedding(query, {ranks: ['genus'], topK: 1});
      assert.deepStrictEqual(Object.keys(r.ranks), ['genus']);
      assert.strictEqual(r.species.length, 1);
      assert.strictEqual(r.best.name, 'Turdus');
    });

    await t.test('restrictTo renormalizes over the allowed species', async () => {
      let r = await bioClip.classifyEmbedding(query, {restrictTo: ['Aves']});
      assert.deepStrictEqual(r.species.map((s) => s.name), ['Turdus migratorius', 'Turdus merula', 'Corvus corax']);
      [0.375, 0.375, 0.25].forEach((p, i) => close(r.species[i].probability, p, r.species[i].name));
      assert.deepStrictEqual(r.ranks.kingdom.map((k) => k.name), ['Animalia'], 'disallowed taxa are not listed');
      close(r.ranks.kingdom[0].probability, 1, 'Animalia');
      close(r.ranks.genus[0].probability, 0.75, 'Turdus');
      assert.strictEqual(r.best.name, 'Turdus');

      // A checklist mixing ranks and name forms: a species by short name, a genus by lineage.
      r = await bioClip.classifyEmbedding(query, {restrictTo: ['Canis lupus', 'Animalia Chordata Aves Passeriformes Corvidae Corvus']});
      assert.deepStrictEqual(r.species.map((s) => s.name), ['Corvus corax', 'Canis lupus']);
      close(r.species[0].probability, 2 / 3, 'Corvus corax');
      assert.strictEqual(r.best.name, 'Corvus corax');

      r = await bioClip.classifyEmbedding(query, {restrictTo: 'Rosa'});
      close(r.species[0].probability, 1, 'Rosa canina');
      assert.strictEqual(r.species.length, 1);
    });

    await t.test('restrictTo with unknown names or nothing allowed is a typed error', async () => {
      await assert.rejects(bioClip.classifyEmbedding(query, {restrictTo: ['Dinosauria']}), BioClipInputError);
      await assert.rejects(bioClip.classifyEmbedding(query, {restrictTo: []}), BioClipInputError);
      await assert.rejects(bioClip.classifyEmbedding(query, {topK: 0}), BioClipInputError);
      await assert.rejects(bioClip.classifyEmbedding(query, {ranks: ['tribe']}), BioClipInputError);
      await assert.rejects(bioClip.classifyEmbedding(new Float32Array(3)), BioClipInputError);
    });

    await t.test('prior: weights multiplied in before the softmax change the ranking as documented', async () => {
      const plain = await bioClip.classifyEmbedding(query, {topK: 5});
      // No prior, or prior: null, is the old answer exactly.
      assert.deepStrictEqual(await bioClip.classifyEmbedding(query, {topK: 5, prior: null}), plain);
      assert.deepStrictEqual(await bioClip.classifyEmbedding(query, {topK: 5, prior: undefined}), plain);
      // Rosa canina has the lowest logit (w = 1) but a prior of 10: p ~ w * prior = 10 / 19.
      const rosa = await bioClip.classifyEmbedding(query, {topK: 5, prior: Float32Array.from([1, 1, 1, 1, 10])});
      assert.strictEqual(rosa.species[0].name, 'Rosa canina');
      [10 / 19, 3 / 19, 3 / 19, 2 / 19, 1 / 19].forEach((p, i) => close(rosa.species[i].probability, p, rosa.species[i].name));
      close(rosa.ranks.kingdom[0].probability, 10 / 19, 'Plantae');
      assert.strictEqual(rosa.ranks.kingdom[0].name, 'Plantae');
      // The prior does not move the similarity (the photo's cosine to its best species).
      close(rosa.similarity, plain.similarity, 'similarity');
      // Only the ratios matter.
      const scaled = await bioClip.classifyEmbedding(query, {topK: 5, prior: Float32Array.from([0.1, 0.1, 0.1, 0.1, 1])});
      rosa.species.forEach((s, i) => close(scaled.species[i].probability, s.probability, s.name));
      // A zero prior removes a species: the others renormalize (3, 2, 1, 1 of 7).
      const noRobin = await bioClip.classifyEmbedding(query, {topK: 5, prior: Float32Array.from([0, 1, 1, 1, 1])});
      assert.ok(!noRobin.species.some((s) => s.name === 'Turdus migratorius' && s.probability > 0));
      assert.strictEqual(noRobin.species[0].name, 'Turdus merula');
      close(noRobin.species[0].probability, 3 / 7, 'Turdus merula');
      // A map of taxon names at any rank: the most specific named taxon gives the weight.
      const byName = await bioClip.classifyEmbedding(query, {topK: 5, prior: {Animalia: 1, Plantae: 1, 'Rosa canina': 10}});
      rosa.species.forEach((s, i) => assert.deepStrictEqual([byName.species[i].name, Math.abs(byName.species[i].probability - s.probability) < 1e-9], [s.name, true]));
      const birds = await bioClip.classifyEmbedding(query, {topK: 5, prior: new Map([['Aves', 2]])});
      const restricted = await bioClip.classifyEmbedding(query, {topK: 5, restrictTo: 'Aves'});
      assert.deepStrictEqual(birds.species.filter((s) => s.probability > 0).map((s) => s.name), restricted.species.map((s) => s.name));
      restricted.species.forEach((s, i) => close(birds.species[i].probability, s.probability, s.name));
      // With restrictTo too: the prior acts inside the allowed species.
      const both = await bioClip.classifyEmbedding(query, {restrictTo: 'Aves', prior: Float32Array.from([1, 1, 3, 1, 1])});
      assert.strictEqual(both.species[0].name, 'Corvus corax');
      close(both.species[0].probability, 6 / 12, 'Corvus corax');
    });

    await t.test('prior: bad weights are typed errors that say what is wrong', async () => {
      const rejects = (prior, pattern) => assert.rejects(bioClip.classifyEmbedding(query, {prior}),
                                                         (e) => e instanceof BioClipInputError && pattern.test(e.message));
      await rejects(Float32Array.from([1, 1, 1]), /prior has 3 weights but the label bank has 5 species/);
      await rejects(Float32Array.from([1, -1, 1, 1, 1]), /prior \[1\] is -1/);
      await rejects(Float32Array.from([1, NaN, 1, 1, 1]), /prior \[1\] is NaN/);
      await rejects(new Float32Array(5), /weight 0 to every species/);
      await rejects({Dinosauria: 1}, /no taxon named "Dinosauria"/);
      await rejects({Aves: 'high'}, /"Aves" is high/);
      await rejects([1, 1, 1, 1, 1], /must be a Float32Array of 5 weights/);
      await assert.rejects(bioClip.classifyEmbedding(query, {restrictTo: 'Rosa', prior: {Aves: 1}}), /weight 0 to every allowed species/);
    });

    await t.test('a short name shared by two taxa must be given as a full lineage', async () => {
      const homonyms = h.handBank([
        [['Plantae', 'Tracheophyta', 'Magnoliopsida', 'Rosales', 'Moraceae', 'Ficus', 'carica'], 'Fig', 2],
        [['Animalia', 'Mollusca', 'Gastropoda', 'Littorinimorpha', 'Ficidae', 'Ficus', 'ficus'], 'Fig shell', 1],
      ], bioClip.embedDim);
      const other = await load({model, labels: homonyms.labels, manifest: homonyms.manifest});
      await assert.rejects(other.classifyEmbedding(query, {restrictTo: 'Ficus'}), /ambiguous/);
      const r = await other.classifyEmbedding(query, {restrictTo: 'Animalia Mollusca Gastropoda Littorinimorpha Ficidae Ficus'});
      assert.deepStrictEqual(r.species.map((s) => [s.name, s.commonName]), [['Ficus ficus', 'Fig shell']]);
      other.dispose();
    });

    await t.test('a taxon without species (last in its table) gets probability 0', async () => {
      const withEmpty = h.handBank(SPECIES, bioClip.embedDim, 10, 0.5,
                                   [['Animalia', 'Chordata', 'Aves', 'Passeriformes', 'Turdidae', 'Catharus']]);
      const other = await load({model, labels: withEmpty.labels, manifest: withEmpty.manifest});
      const r = await other.classifyEmbedding(query, {topK: 10});
      assert.strictEqual(r.ranks.genus.length, 5, 'Turdus, Corvus, Canis, Rosa and the empty Catharus');
      assert.deepStrictEqual(r.ranks.genus.map((g) => g.name).slice(0, 2), ['Turdus', 'Corvus']);
      const catharus = r.ranks.genus.find((g) => g.name === 'Catharus');
      assert.strictEqual(catharus.probability, 0);
      close(r.ranks.genus.reduce((sum, g) => sum + g.probability, 0), 1, 'genus probabilities sum to 1');
      other.dispose();
    });

    bioClip.dispose();
    assert.strictEqual(tf.memory().numTensors, 0);
  });
}
