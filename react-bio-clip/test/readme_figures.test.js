'use strict';
// The README's measured tables are the ones bench/readme_figures.js writes from the committed
// bench/results JSON files: a hand-edited number, or a re-run bench without the README, fails.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const figures = require('../bench/readme_figures');

test('README figures are written from bench/results, not typed', () => {
  const text = fs.readFileSync(figures.README, 'utf8');
  const tables = figures.blocks();
  assert.strictEqual(figures.render(text, tables), text,
      'README.md differs from bench/results: run node bench/readme_figures.js');
  // The check can fail: another measurement gives another README.
  const edited = text.replace(/\| float32 \| 0\.\d+ \|/, '| float32 | 0.5 |');
  assert.notStrictEqual(edited, text, 'the webgl table holds the float32 cosine');
  assert.notStrictEqual(figures.render(edited, tables), edited);
});
