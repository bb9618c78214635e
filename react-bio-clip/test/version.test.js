'use strict';
const test = require('node:test');
const assert = require('node:assert');
const {version} = require('react-bio-clip');

test('version.ts matches package.json', () => {
  assert.strictEqual(version, require('../package.json').version);
});
