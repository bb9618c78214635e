'use strict';
// The core must run in plain Node with no React Native installed, and must not even load React.
const test = require('node:test');
const assert = require('node:assert');
const {execFileSync} = require('child_process');
const path = require('path');

const ROOT = path.join(__dirname, '..');

function node(script) {
  return execFileSync(process.execPath, ['-e', script], {cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']});
}

test('react-native and the native peers are not installed here (the premise of this test)', () => {
  for (const peer of ['react-native', 'expo-camera', 'expo-gl', 'expo-asset', 'expo-file-system', '@tensorflow/tfjs-react-native']) {
    assert.throws(() => require.resolve(peer, {paths: [ROOT]}), /Cannot find module/, `${peer} is installed`);
  }
});

test('requiring the core (and the node entry) loads neither react nor react-native', () => {
  const out = node(`
    const core = require('react-bio-clip');
    require('react-bio-clip/node');
    const loaded = Object.keys(require.cache).filter((f) => /node_modules[\\\\/](react|react-native|expo-[^\\\\/]+)[\\\\/]/.test(f));
    console.log(JSON.stringify({load: typeof core.load, loaded}));`);
  const {load, loaded} = JSON.parse(out.trim().split('\n').pop());
  assert.strictEqual(load, 'function');
  assert.deepStrictEqual(loaded, []);
});

test('only the native entry needs the React Native peers', () => {
  assert.throws(() => node(`require('react-bio-clip/native')`), /Cannot find module '(react-native|expo-camera|expo-gl|expo-asset|expo-file-system|@tensorflow\/tfjs-react-native)'/);
});
