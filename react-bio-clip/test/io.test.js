'use strict';
// URL resolution and UTF-8 decoding are done by hand (React Native lacks URL resolution and may
// lack TextDecoder), so they get their own checks.
const test = require('node:test');
const assert = require('node:assert');
const {resolveRelative, decodeUtf8} = require('../dist/io');

test('resolveRelative finds the manifest and shards next to model.json', () => {
  const cases = [
    ['http://h:8/a/tfjs/model.json', '../manifest.json', 'http://h:8/a/manifest.json'],
    ['https://h/a/tfjs/model.json?v=2#x', 'group1-shard1of2.bin', 'https://h/a/tfjs/group1-shard1of2.bin'],
    ['http://h/tfjs/model.json', '../../manifest.json', 'http://h/manifest.json'],
    ['/srv/export/tfjs/model.json', '../manifest.json', '/srv/export/manifest.json'],
    ['export/tfjs/model.json', '../manifest.json', 'export/manifest.json'],
    ['file:///x/labels/label_bank.json', 'label_bank.bin', 'file:///x/labels/label_bank.bin'],
    ['http://h/a/labels/label_bank.json', 'https://cdn/bank.bin', 'https://cdn/bank.bin'],
  ];
  for (const [base, relative, expected] of cases) assert.strictEqual(resolveRelative(base, relative), expected, `${base} + ${relative}`);
});

test('decodeUtf8 without TextDecoder matches TextDecoder', () => {
  const text = 'Rosa canina — Hundsrose 🌹 Ébène, 鸫';
  const bytes = new Uint8Array(Buffer.from(text));
  const saved = global.TextDecoder;
  try {
    global.TextDecoder = undefined;
    assert.strictEqual(decodeUtf8(bytes), text);
    // Long enough to cross the fallback's 4096-code-point chunks, with multi-byte characters
    // on both sides of every chunk boundary (a names.bin blob at 454k species is ~10 MB).
    const long = Array.from({length: 3000}, (_, i) => `${text} ${i}\n`).join('');
    assert.strictEqual(decodeUtf8(new Uint8Array(Buffer.from(long))), long);
  } finally {
    global.TextDecoder = saved;
  }
  assert.strictEqual(decodeUtf8(bytes), text);
});
