#!/usr/bin/env node
'use strict';
/**
 * Builds the example app's JS bundles, Hermes bytecode included, for Android and iOS, against
 * each Expo SDK of the support matrix, and writes what it built to a JSON file.
 *
 *   node react-bio-clip/example/scripts/build_bundles.js --export_dir=runs/react_fixture/export \
 *       [--sdks=58,57] [--out=runs/example_bundles/bundle_sizes.json] [--results=FILE] [--readme=FILE]
 *       [--check_readme=FILE]
 *
 * (`make example-bundle` from the repo root runs exactly this, after making the export with
 * react-bio-clip/scripts/make_fixture.py.) Per SDK:
 *   1. the app folder: example/ (SDK 58) or example/sdk57/ (its own package.json and lock; the
 *      app's sources are copied in from example/, so both SDKs bundle the same App);
 *   2. the export is copied to <app>/export/ and <app>/bundled_export.js is written with one
 *      require() per file (weights are never committed: the export is a generated fixture);
 *   3. `npm ci --prefer-offline` (react-bio-clip comes from `file:..` with install-links=true,
 *      i.e. as a packed copy of the package, dist/ included, as npm would install it);
 *   4. `tsc` on the app and on the package's native sources against this SDK's real types;
 *   5. `npx expo export --platform android --platform ios`: Metro bundles, and hermesc compiles
 *      each bundle to Hermes bytecode (.hbc);
 *   6. checks: each .hbc starts with Hermes' magic number, contains the camera route
 *      (createCameraTextureAsync), react-bio-clip's bundled-asset code, the picker, addTaxon and
 *      restrictTo, and every .bin of the export went into the assets.
 * --out gets {sdk, versions installed, route, per platform .hbc bytes, seconds per step};
 * --results gets a copy (bench/results/expo_bundles.json); --readme has its support matrix
 * (between the support-matrix markers) rewritten from that JSON; --check_readme fails unless
 * every row of that matrix is an SDK, with the same versions, that this run built.
 */
const {execFileSync} = require('child_process');
const fs = require('fs');
const path = require('path');

const EXAMPLE = path.resolve(__dirname, '..');
const PACKAGE = path.resolve(EXAMPLE, '..');
const REPO = path.resolve(PACKAGE, '..');
/** What each SDK row bundles from; `copySources` for the rows that share example/'s App. */
const SDKS = {
  58: {dir: EXAMPLE, copySources: false},
  57: {dir: path.join(EXAMPLE, 'sdk57'), copySources: true},
};
const APP_SOURCES = ['App.tsx', 'index.js', 'app.json', 'metro.config.js', 'tsconfig.json', 'bundled_export.d.ts', 'src'];
const PLATFORMS = ['android', 'ios'];
const ROUTE = 'expo-camera CameraView -> expo-gl camera texture -> tfjs-react-native fromTexture (rn-webgl) -> squashResize';
/** Hermes bytecode files start with this 64-bit magic number, little-endian. */
const HERMES_MAGIC = Buffer.from([0xc6, 0x1f, 0xbc, 0x03, 0xc1, 0x03, 0x19, 0x1f]);
/**
 * Strings (property names and messages survive minification) that prove the bundle holds the
 * camera route, the asset -> bytes flow, the photo picker and the few-shot and restrictTo calls.
 */
const MUST_CONTAIN = ['createCameraTextureAsync', 'bundledAssetBytes', 'Metro asset id', 'launchImageLibraryAsync',
  'addTaxon', 'restrictTo'];
const VERSIONS_OF = ['expo', 'react-native', 'react', 'expo-camera', 'expo-gl', 'expo-asset', 'expo-file-system',
  'expo-image-picker', '@tensorflow/tfjs', '@tensorflow/tfjs-react-native', 'react-bio-clip'];
const MATRIX_BEGIN = '<!-- support-matrix:begin (written by example/scripts/build_bundles.js from bench/results/expo_bundles.json) -->';
const MATRIX_END = '<!-- support-matrix:end -->';

function parseArgs(argv) {
  const args = {sdks: '58,57', out: path.join(REPO, 'runs/example_bundles/bundle_sizes.json')};
  for (const arg of argv) {
    const match = /^--([a-z_]+)=(.*)$/.exec(arg);
    if (!match) throw new Error(`unknown argument ${arg} (use --name=value)`);
    if (!['export_dir', 'sdks', 'out', 'results', 'readme', 'check_readme'].includes(match[1])) throw new Error(`unknown flag --${match[1]}`);
    args[match[1]] = match[2];
  }
  if (!args.export_dir) {
    throw new Error('--export_dir is required: an export directory, e.g. the one react-bio-clip/scripts/make_fixture.py ' +
                    'writes to <out_dir>/export');
  }
  args.sdks = args.sdks.split(',').map((s) => s.trim());
  for (const sdk of args.sdks) if (!SDKS[sdk]) throw new Error(`--sdks: no app folder for SDK ${sdk} (have ${Object.keys(SDKS)})`);
  return args;
}

function log(message) {
  process.stdout.write(`[build_bundles] ${message}\n`);
}

/** Runs a command, streaming its output; returns the seconds it took. */
function run(cmd, args, cwd) {
  const start = process.hrtime.bigint();
  execFileSync(cmd, args, {cwd, stdio: 'inherit', env: {...process.env, CI: '1', EXPO_NO_TELEMETRY: '1', EXPO_OFFLINE: '1'}});
  return Number(process.hrtime.bigint() - start) / 1e9;
}

function copyRecursive(from, to) {
  fs.rmSync(to, {recursive: true, force: true});
  fs.cpSync(from, to, {recursive: true});
}

/** Copies the export into the app and writes bundled_export.js with a require() per file. */
function placeExport(exportDir, appDir) {
  for (const file of ['manifest.json', 'tfjs/model.json', 'labels/label_bank.json', 'labels/label_bank.bin', 'labels/names.bin']) {
    if (!fs.existsSync(path.join(exportDir, file))) throw new Error(`${exportDir} is not an export directory: no ${file}`);
  }
  copyRecursive(exportDir, path.join(appDir, 'export'));
  // Only what the app bundles: no SavedModel or TFLite copies in the assets.
  for (const extra of ['saved_model', 'tflite']) fs.rmSync(path.join(appDir, 'export', extra), {recursive: true, force: true});
  const modelJson = JSON.parse(fs.readFileSync(path.join(exportDir, 'tfjs/model.json'), 'utf8'));
  const shards = modelJson.weightsManifest.flatMap((group) => group.paths);
  const hasCommonNames = fs.existsSync(path.join(exportDir, 'labels/common_names.bin'));
  const lines = [
    '// Generated by scripts/build_bundles.js from the export it copied to ./export (not committed).',
    'module.exports.bundledExport = {',
    "  modelJson: require('./export/tfjs/model.json'),",
    `  modelWeights: [${shards.map((shard) => `require('./export/tfjs/${shard}')`).join(', ')}],`,
    "  manifest: require('./export/manifest.json'),",
    "  labelsJson: require('./export/labels/label_bank.json'),",
    "  labelsBin: require('./export/labels/label_bank.bin'),",
    "  labelsNames: require('./export/labels/names.bin'),",
    ...(hasCommonNames ? ["  labelsCommonNames: require('./export/labels/common_names.bin'),"] : []),
    '};',
    '',
  ];
  fs.writeFileSync(path.join(appDir, 'bundled_export.js'), lines.join('\n'));
  return shards.length + 2 + (hasCommonNames ? 1 : 0);
}

function installedVersions(appDir) {
  const versions = {};
  for (const name of VERSIONS_OF) {
    versions[name] = JSON.parse(fs.readFileSync(path.join(appDir, 'node_modules', name, 'package.json'), 'utf8')).version;
  }
  return versions;
}

/** Checks one platform's export and returns its record. */
function checkPlatform(distDir, platform, binAssets) {
  const metadata = JSON.parse(fs.readFileSync(path.join(distDir, 'metadata.json'), 'utf8'));
  const entry = metadata.fileMetadata[platform];
  if (!entry) throw new Error(`${distDir}/metadata.json has no ${platform} bundle`);
  if (!entry.bundle.endsWith('.hbc')) throw new Error(`the ${platform} bundle ${entry.bundle} is not Hermes bytecode (.hbc)`);
  const bytes = fs.readFileSync(path.join(distDir, entry.bundle));
  if (!bytes.subarray(0, 8).equals(HERMES_MAGIC)) throw new Error(`${entry.bundle} does not start with Hermes' magic number`);
  for (const text of MUST_CONTAIN) {
    if (bytes.indexOf(text) < 0) throw new Error(`${entry.bundle} lacks "${text}": part of the app is not in the bundle`);
  }
  const bins = entry.assets.filter((asset) => asset.ext === 'bin').length;
  if (bins !== binAssets) throw new Error(`${platform}: ${bins} .bin assets bundled, the export has ${binAssets}`);
  return {hbc_bytes: bytes.length, hbc_file: entry.bundle, bin_assets: bins};
}

function buildSdk(sdk, exportDir) {
  const {dir, copySources} = SDKS[sdk];
  const seconds = {};
  if (copySources) {
    for (const source of APP_SOURCES) copyRecursive(path.join(EXAMPLE, source), path.join(dir, source));
  }
  const binAssets = placeExport(exportDir, dir);
  log(`SDK ${sdk}: npm ci in ${path.relative(REPO, dir)}`);
  seconds.npm_ci = run('npm', ['ci', '--no-audit', '--no-fund', '--prefer-offline'], dir);
  const versions = installedVersions(dir);
  if (!versions.expo.startsWith(`${sdk}.`)) throw new Error(`${dir} installed expo ${versions.expo}, not SDK ${sdk}`);
  log(`SDK ${sdk}: tsc (the app, and react-bio-clip/src/native against this SDK's types)`);
  seconds.typecheck = run(path.join(dir, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], dir);
  const distDir = path.join(dir, 'dist');
  fs.rmSync(distDir, {recursive: true, force: true});
  log(`SDK ${sdk}: expo export (Metro + hermesc) for ${PLATFORMS.join(' and ')}`);
  seconds.expo_export = run(path.join(dir, 'node_modules/.bin/expo'),
                            ['export', ...PLATFORMS.flatMap((p) => ['--platform', p]), '--output-dir', distDir], dir);
  const platforms = {};
  for (const platform of PLATFORMS) platforms[platform] = checkPlatform(distDir, platform, binAssets);
  for (const key of Object.keys(seconds)) seconds[key] = Math.round(seconds[key] * 10) / 10;
  return {sdk: Number(sdk), app_dir: path.relative(PACKAGE, dir), route: ROUTE, versions, platforms, seconds};
}

function formatMatrix(results) {
  const rows = [
    '| Expo SDK | react-native | React | expo-camera | expo-gl | tfjs-react-native | route | Android .hbc | iOS .hbc |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  const mb = (bytes) => `${(bytes / 1e6).toFixed(2)} MB`;
  for (const r of results.builds) {
    rows.push(`| ${r.sdk} (expo ${r.versions.expo}) | ${r.versions['react-native']} | ${r.versions.react} | ` +
              `${r.versions['expo-camera']} | ${r.versions['expo-gl']} | ${r.versions['@tensorflow/tfjs-react-native']} | ` +
              `expo-gl camera texture + tfjs-react-native (rn-webgl) | ${mb(r.platforms.android.hbc_bytes)} | ` +
              `${mb(r.platforms.ios.hbc_bytes)} |`);
  }
  return rows.join('\n');
}

/** The matrix rows without their size columns: what a row claims was verified. */
function rowClaims(matrix) {
  return matrix.split('\n').filter((line) => /^\| \d/.test(line)).map((line) => line.split('|').slice(1, -3).map((c) => c.trim()).join(' | '));
}

/**
 * Every row of the README's matrix must be an SDK this run built, with the same versions (sizes
 * may move with the code; `make example-bundle` rewrites them).
 */
function checkReadmeMatrix(readme, results) {
  const text = fs.readFileSync(readme, 'utf8');
  const begin = text.indexOf(MATRIX_BEGIN);
  const end = text.indexOf(MATRIX_END);
  if (begin < 0 || end < begin) throw new Error(`${readme} has no support-matrix markers`);
  const claimed = rowClaims(text.slice(begin + MATRIX_BEGIN.length, end));
  const built = rowClaims(formatMatrix(results));
  if (claimed.length === 0) throw new Error(`${readme}: the support matrix is empty; run make example-bundle`);
  for (const row of claimed) {
    if (!built.includes(row)) {
      throw new Error(`${readme}'s support matrix claims "${row}", which this run did not build ` +
                      `(built: ${built.join('; ')}); run make example-bundle`);
    }
  }
  log(`${path.relative(REPO, readme)}: its ${claimed.length} support-matrix rows are the versions built here`);
}

function writeReadmeMatrix(readme, results) {
  const text = fs.readFileSync(readme, 'utf8');
  const begin = text.indexOf(MATRIX_BEGIN);
  const end = text.indexOf(MATRIX_END);
  if (begin < 0 || end < begin) throw new Error(`${readme} has no support-matrix markers`);
  fs.writeFileSync(readme, text.slice(0, begin + MATRIX_BEGIN.length) + '\n' + formatMatrix(results) + '\n' + text.slice(end));
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const exportDir = path.resolve(args.export_dir);
  const start = process.hrtime.bigint();
  log('building react-bio-clip (dist/ goes into the packed copy the apps install)');
  run('npm', ['run', 'build'], PACKAGE);
  const builds = args.sdks.map((sdk) => buildSdk(sdk, exportDir));
  const results = {
    what: 'react-bio-clip/example bundles: npx expo export per Expo SDK, Hermes bytecode (.hbc) per platform',
    command: 'make example-bundle (react-bio-clip/example/scripts/build_bundles.js)',
    node: process.version,
    total_seconds: Math.round(Number(process.hrtime.bigint() - start) / 1e8) / 10,
    builds,
  };
  fs.mkdirSync(path.dirname(path.resolve(args.out)), {recursive: true});
  fs.writeFileSync(path.resolve(args.out), JSON.stringify(results, null, 2) + '\n');
  if (args.results) {
    fs.mkdirSync(path.dirname(path.resolve(args.results)), {recursive: true});
    fs.writeFileSync(path.resolve(args.results), JSON.stringify(results, null, 2) + '\n');
  }
  if (args.readme) writeReadmeMatrix(path.resolve(args.readme), results);
  if (args.check_readme) checkReadmeMatrix(path.resolve(args.check_readme), results);
  log(`done in ${results.total_seconds} s:\n${formatMatrix(results)}`);
}

if (require.main === module) {
  try {
    main();
  } catch (error) {
    process.stderr.write(`[build_bundles] FAILED: ${error.message}\n`);
    process.exit(1);
  }
}

module.exports = {checkReadmeMatrix, formatMatrix, rowClaims, writeReadmeMatrix, HERMES_MAGIC, MATRIX_BEGIN, MATRIX_END};
