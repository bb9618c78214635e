#!/usr/bin/env node
'use strict';
// Serves the browser demo (build-browser/demo/) with an export directory at /export/:
//   npm run demo -- --export_dir=DIR [--port=8080]
// then open the printed URL, pick a photo. Ctrl-C stops it.
const path = require('path');
const {serve} = require('./serve');

const args = Object.fromEntries(process.argv.slice(2).map((a) => {
  const m = /^--(export_dir|port)=(.*)$/.exec(a);
  if (!m) {
    process.stderr.write(`unknown argument ${a}\nusage: npm run demo -- --export_dir=DIR [--port=8080]\n`);
    process.exit(2);
  }
  return [m[1], m[2]];
}));
if (!args.export_dir) {
  process.stderr.write('usage: npm run demo -- --export_dir=DIR [--port=8080]  (DIR: a BioCLIP Lite export directory)\n');
  process.exit(2);
}
serve({'/': path.join(__dirname, '..', 'build-browser'), '/export': path.resolve(args.export_dir)}, Number(args.port ?? 8080))
    .then(({url}) => process.stdout.write(`demo at ${url}/demo/ (export ${path.resolve(args.export_dir)})\n`));
