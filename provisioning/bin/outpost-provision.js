#!/usr/bin/env node
// `outpost-provision` on the PATH (npm bin on a tech's laptop): runs the compiled CLI.
import { existsSync } from 'node:fs';

const cli = new URL('../../dist/provisioning/src/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write('outpost-provision: not built yet: run `npm run build` in the repository first\n');
  process.exit(1);
}
await import(cli.href);
