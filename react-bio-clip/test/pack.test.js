'use strict';
// The package as a user gets it: copy the tracked files of react-bio-clip (no dist/, no
// node_modules) to a temp dir, `npm ci --ignore-scripts` (so nothing is built yet), `npm pack`
// (its `prepare` script must build dist/), install the tarball into a fresh npm project next to
// @tensorflow/tfjs, and there: require and import the entry points, and run the README's Node
// example verbatim on the fixture export and a fixture photo. Real npm, real registry cache
// (--prefer-offline), no mocks.
const test = require('node:test');
const assert = require('node:assert');
const {execFileSync} = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const h = require('./helpers');

const ROOT = path.join(__dirname, '..');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const INSTALL_FLAGS = ['--no-audit', '--no-fund', '--prefer-offline'];

/** The environment of the outer `npm test`, minus what would make inner npm runs think they are part of it. */
function cleanEnv() {
  const env = {...process.env};
  for (const key of Object.keys(env)) {
    if (/^npm_(package_|lifecycle_|config_(prefix|global|argv))/i.test(key) || key === 'INIT_CWD') delete env[key];
  }
  return env;
}

function run(cmd, args, cwd) {
  try {
    return execFileSync(cmd, args, {cwd, env: cleanEnv(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20});
  } catch (error) {
    throw new Error(`${cmd} ${args.join(' ')} failed in ${cwd}:\n${error.stdout}\n${error.stderr}`);
  }
}

/** The files a clean clone has: git's tracked (and not ignored) files, or, without git, all but the ignored build outputs. */
function sourceFiles() {
  try {
    const out = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard', '.'],
                             {cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']});
    return out.split('\0').filter((f) => f && fs.existsSync(path.join(ROOT, f)));
  } catch {
    const skip = new Set(['node_modules', 'dist', 'build-test']);
    const walk = (dir) => fs.readdirSync(path.join(ROOT, dir), {withFileTypes: true}).flatMap((entry) => {
      const rel = path.join(dir, entry.name);
      if (skip.has(entry.name) || entry.name.endsWith('.tsbuildinfo') || entry.name.endsWith('.tgz')) return [];
      return entry.isDirectory() ? walk(rel) : [rel];
    });
    return walk('.');
  }
}

/** The version the package's own lock file resolved, so the fresh project installs from the same cache. */
function lockedVersion(name) {
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8'));
  const entry = lock.packages[`node_modules/${name}`];
  assert.ok(entry, `${name} is not in package-lock.json`);
  return entry.version;
}

/** The README's Node example: the ```js block of the "## Node" section. */
function readmeNodeExample() {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.split(/^## /m).find((s) => s.startsWith('Node'));
  assert.ok(section, 'README.md has no "## Node" section');
  const block = /```js\n([\s\S]*?)```/.exec(section);
  assert.ok(block, 'the README\'s Node section has no ```js example');
  return block[1];
}

test('npm pack from a clean copy ships a working package', async (t) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'rbc-pack-'));
  try {
    const clean = path.join(work, 'react-bio-clip');
    for (const file of sourceFiles()) {
      fs.mkdirSync(path.dirname(path.join(clean, file)), {recursive: true});
      fs.copyFileSync(path.join(ROOT, file), path.join(clean, file));
    }
    assert.ok(!fs.existsSync(path.join(clean, 'dist')), 'the clean copy must not hold an earlier build');
    run(NPM, ['ci', '--ignore-scripts', ...INSTALL_FLAGS], clean);
    assert.ok(!fs.existsSync(path.join(clean, 'dist')), 'npm ci --ignore-scripts must not have built');
    const [packed] = JSON.parse(run(NPM, ['pack', '--json', '--pack-destination', work], clean));
    const files = packed.files.map((f) => f.path);

    await t.test('the tarball holds the build, the types, the LICENSE and each entry point', () => {
      for (const file of ['dist/index.js', 'dist/index.d.ts', 'dist/node/index.js', 'dist/react/index.js',
        'dist/native/index.js', 'LICENSE', 'README.md', 'package.json', 'node/package.json']) {
        assert.ok(files.includes(file), `${file} is not in the tarball`);
      }
      assert.ok(!files.some((f) => f.startsWith('test/') || f.startsWith('node_modules/')), 'tests or node_modules were packed');
      const license = fs.readFileSync(path.join(clean, 'LICENSE'), 'utf8');
      assert.match(license, /^MIT License/);
      assert.match(license, /Copyright \(c\) \d{4} BioCLIP Lite authors/);
      assert.strictEqual(JSON.parse(fs.readFileSync(path.join(clean, 'package.json'), 'utf8')).license, 'MIT');
    });

    await t.test('every relative link in the README points at a file in the tarball', () => {
      const readme = fs.readFileSync(path.join(clean, 'README.md'), 'utf8');
      const links = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]);
      for (const link of links) {
        if (/^(https?:|mailto:|#)/.test(link)) continue;
        const target = path.posix.normalize(link.split('#')[0]);
        assert.ok(files.includes(target), `README links to ${link}, which is not in the package (npm shows it broken)`);
      }
    });

    const app = path.join(work, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({name: 'rbc-pack-check', version: '1.0.0', private: true}));
    run(NPM, ['install', ...INSTALL_FLAGS, path.join(work, packed.filename),
      ...['@tensorflow/tfjs', '@tensorflow/tfjs-backend-wasm', 'jpeg-js'].map((name) => `${name}@${lockedVersion(name)}`)], app);

    await t.test('require and import of the core and react-bio-clip/node, without React installed', () => {
      assert.ok(!fs.existsSync(path.join(app, 'node_modules', 'react')), 'react was installed into the fresh project');
      const cjs = JSON.parse(run(process.execPath, ['-e', `
        const core = require('react-bio-clip');
        const node = require('react-bio-clip/node');
        console.log(JSON.stringify({load: typeof core.load, error: typeof core.BioClipInputError,
                                    version: core.version, fromDir: typeof node.loadFromDirectory}));`], app));
      assert.deepStrictEqual(cjs, {load: 'function', error: 'function', version: require('../package.json').version, fromDir: 'function'});
      const esm = run(process.execPath, ['--input-type=module', '-e', `
        import {load} from 'react-bio-clip';
        import {loadFromDirectory} from 'react-bio-clip/node';
        console.log(typeof load, typeof loadFromDirectory);`], app);
      assert.strictEqual(esm.trim(), 'function function');
    });

    await t.test('the README\'s Node example runs there: wasm backend, loadFromDirectory, a JPEG', () => {
      fs.writeFileSync(path.join(app, 'classify.js'), readmeNodeExample());
      const photo = h.expected().photos.find((p) => p.name === 'square_a');
      const out = run(process.execPath, ['classify.js', h.EXPORT_DIR, path.join(h.FIXTURES, 'photos', 'square_a.jpg')], app);
      // Python's top-1 for these JPEG bytes (jpeg-js keeps it: test/parity.test.js).
      const top1 = h.speciesShortName(h.EXPORT_DIR, photo.top5_species[0]);
      const lines = out.trim().split('\n');
      assert.ok(lines[0].startsWith(top1), `expected the top species ${top1}, got:\n${out}`);
      assert.match(out, /backend: wasm/);
    });
  } finally {
    fs.rmSync(work, {recursive: true, force: true});
  }
});
