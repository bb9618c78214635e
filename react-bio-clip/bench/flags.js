'use strict';
// What the benches share: the command line (--name=value flags with help, --help, exit status 2
// for bad usage), writing the JSON result atomically, and exit status 1 on a failure.
const fs = require('fs');
const path = require('path');

/**
 * Parses process.argv into `flags` ({name: {help, value}}), in place, and returns it.
 * `usageLine` is printed first under --help and for an unknown argument.
 */
function parseFlags(flags, usageLine, argv = process.argv.slice(2)) {
  const usage = (message) => {
    if (message) process.stderr.write(`error: ${message}\n`);
    process.stderr.write(`usage: ${usageLine}\n`);
    for (const [name, flag] of Object.entries(flags)) {
      process.stderr.write(`  --${name}: ${flag.help} (default: ${JSON.stringify(flag.value)})\n`);
    }
    process.exit(message ? 2 : 0);
  };
  for (const arg of argv) {
    if (arg === '--help' || arg === '-h') usage();
    const match = /^--([a-z_]+)=(.*)$/.exec(arg);
    if (!match || !(match[1] in flags)) usage(`unknown argument ${arg}`);
    flags[match[1]].value = match[2];
  }
  flags.usage = usage;
  return flags;
}

/** Writes result as JSON to file (temp name + rename, so a reader never sees half of it). */
function writeResult(file, result) {
  const outPath = path.resolve(file);
  fs.mkdirSync(path.dirname(outPath), {recursive: true});
  const tmp = `${outPath}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(result, null, 2) + '\n');
  fs.renameSync(tmp, outPath);
  process.stderr.write(`wrote ${outPath}\n`);
}

/** Runs the async main, printing a failure and exiting 1. */
function runMain(main) {
  main().catch((error) => {
    process.stderr.write(`error: ${error.stack || error}\n`);
    process.exit(1);
  });
}

module.exports = {parseFlags, runMain, writeResult};
