#!/usr/bin/env node
'use strict';
// Bundles the browser pages with esbuild: the test harness (browser/harness.ts) and the demo
// page (browser/demo/), each with the built package (dist/) and all of @tensorflow/tfjs, into
// build-browser/. Run after `npm run build` (tsc); `npm run build:browser` does both.
const fs = require('fs');
const path = require('path');
const esbuild = require('esbuild');

const OUT = path.join(__dirname, '..', 'build-browser');

async function main() {
  fs.rmSync(OUT, {recursive: true, force: true});
  fs.mkdirSync(path.join(OUT, 'demo'), {recursive: true});
  const common = {bundle: true, format: 'iife', platform: 'browser', target: 'es2020', minify: true,
                  sourcemap: true, logLevel: 'warning', legalComments: 'none'};
  await esbuild.build({...common, entryPoints: [path.join(__dirname, 'harness.ts')], outfile: path.join(OUT, 'harness.js')});
  await esbuild.build({...common, entryPoints: [path.join(__dirname, 'demo', 'demo.ts')], outfile: path.join(OUT, 'demo', 'demo.js')});
  fs.writeFileSync(path.join(OUT, 'harness.html'),
                   '<!doctype html><meta charset="utf-8"><title>react-bio-clip harness</title><script src="harness.js"></script>\n');
  fs.copyFileSync(path.join(__dirname, 'demo', 'index.html'), path.join(OUT, 'demo', 'index.html'));
  for (const file of ['harness.js', 'demo/demo.js']) {
    process.stderr.write(`${file}: ${(fs.statSync(path.join(OUT, file)).size / 1e6).toFixed(2)} MB\n`);
  }
}

main().catch((error) => {
  process.stderr.write(`${error.stack ?? error}\n`);
  process.exit(1);
});
