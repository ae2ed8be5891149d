#!/usr/bin/env node
// `outpost` on the PATH (npm bin, and /usr/bin/outpost in the image): runs the compiled CLI.
import { existsSync } from 'node:fs';

const cli = new URL('../../dist/daemon/src/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write(
    'outpost: not built yet: run `npm run build` (or `npm start`) in the repository first\n',
  );
  process.exit(1);
}
await import(cli.href);
