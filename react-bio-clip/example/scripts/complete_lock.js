#!/usr/bin/env node
'use strict';
/**
 * Adds the lock entries that `npm install` leaves out when the registry it ran against lacks
 * some platforms' optional binaries (the registry mirror used here has e.g.
 * @noxcturnal/noxcturnal-linux-x64-gnu but not its darwin/win32/arm64 siblings). Without them
 * `npm ci` refuses the lock ("Missing: ... from lock file") on every machine.
 *
 *   node scripts/complete_lock.js [dir ...]    # after `npm install` in example/ or example/sdk57/
 *
 * Each added entry is an optional dependency marked with the os / cpu / libc its name states, so
 * npm skips it on other platforms and fetches it (from the registry's usual tarball URL) on its
 * own. Only optionalDependencies named <...>-<os>-<cpu>[-<libc>] are added; anything else that
 * is missing is an error worth seeing.
 */
const fs = require('fs');
const path = require('path');

const PLATFORM = /-(darwin|linux|win32|freebsd|android)-(x64|arm64|arm|ia32)(?:-(gnu|musl|msvc|eabihf))?$/;

function completeLock(dir) {
  const file = path.join(dir, 'package-lock.json');
  const lock = JSON.parse(fs.readFileSync(file, 'utf8'));
  const added = [];
  for (const [where, entry] of Object.entries(lock.packages)) {
    for (const [name, spec] of Object.entries(entry.optionalDependencies ?? {})) {
      const base = where === '' ? '' : `${where}/`;
      const candidates = [`${base}node_modules/${name}`, `node_modules/${name}`];
      if (candidates.some((key) => lock.packages[key])) continue;
      const match = PLATFORM.exec(name);
      if (!match || !/^\d+\.\d+\.\d+$/.test(spec)) throw new Error(`${file}: ${name}@${spec} (optional, of ${where}) is missing and is not a platform binary`);
      const [, os, cpu, libc] = match;
      const bare = name.split('/').pop();
      lock.packages[`node_modules/${name}`] = {
        version: spec,
        resolved: `https://registry.npmjs.org/${name}/-/${bare}-${spec}.tgz`,
        ...(cpu ? {cpu: [cpu]} : {}),
        ...(libc === 'gnu' ? {libc: ['glibc']} : libc === 'musl' ? {libc: ['musl']} : {}),
        optional: true,
        os: [os],
      };
      added.push(`${name}@${spec}`);
    }
  }
  const sorted = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : 1)));
  lock.packages = sorted;
  fs.writeFileSync(file, JSON.stringify(lock, null, 2) + '\n');
  process.stdout.write(`${file}: added ${added.length} platform entries${added.length ? ': ' + added.join(', ') : ''}\n`);
}

const dirs = process.argv.slice(2);
for (const dir of dirs.length ? dirs : [path.resolve(__dirname, '..')]) completeLock(path.resolve(dir));
