'use strict';
// The README's support matrix is written from, and checked against, the example bundle builds
// (example/scripts/build_bundles.js). Here on made-up build records: a row the builds did not
// verify must fail the check; sizes may differ (they move with the code).
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const matrix = require('../example/scripts/build_bundles');

function build(sdk, expo, rn, hbc) {
  return {
    sdk, versions: {expo, 'react-native': rn, react: '19.3.0', 'expo-camera': '57.0.6', 'expo-gl': `${sdk}.0.0`,
      '@tensorflow/tfjs-react-native': '1.0.0'},
    platforms: {android: {hbc_bytes: hbc}, ios: {hbc_bytes: hbc - 1000}},
  };
}

function readme(rows) {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'matrix-')), 'README.md');
  fs.writeFileSync(file, `# x\n\n${matrix.MATRIX_BEGIN}\n${rows}\n${matrix.MATRIX_END}\n\nmore\n`);
  return file;
}

test('the matrix written from the builds passes the check, with other sizes too', () => {
  const built = {builds: [build(58, '58.0.26', '0.88.1', 4613740), build(57, '57.0.33', '0.86.3', 4587849)]};
  const file = readme('');
  matrix.writeReadmeMatrix(file, built);
  const text = fs.readFileSync(file, 'utf8');
  assert.match(text, /\| 58 \(expo 58\.0\.26\) \| 0\.88\.1 \|.*\| 4\.61 MB \| 4\.61 MB \|/);
  assert.match(text, /more\n$/, 'text after the markers is kept');
  const rebuilt = {builds: [build(58, '58.0.26', '0.88.1', 5000000), build(57, '57.0.33', '0.86.3', 4000000)]};
  assert.doesNotThrow(() => matrix.checkReadmeMatrix(file, rebuilt));
});

test('a row for an SDK or version that was not built fails the check', () => {
  const file = readme('');
  matrix.writeReadmeMatrix(file, {builds: [build(58, '58.0.26', '0.88.1', 1), build(57, '57.0.33', '0.86.3', 1)]});
  assert.throws(() => matrix.checkReadmeMatrix(file, {builds: [build(58, '58.0.26', '0.88.1', 1)]}),
                /claims "57 \(expo 57\.0\.33\)/);
  assert.throws(() => matrix.checkReadmeMatrix(file, {builds: [build(58, '58.0.27', '0.88.1', 1), build(57, '57.0.33', '0.86.3', 1)]}),
                /claims "58 \(expo 58\.0\.26\)/);
  assert.throws(() => matrix.checkReadmeMatrix(readme(''), {builds: [build(58, '58.0.26', '0.88.1', 1)]}), /empty/);
});
