'use strict';
// The benches' command line: --name=value flags with help, --help, exit status 2 for bad usage.

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

module.exports = {parseFlags};
