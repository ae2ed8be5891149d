// The daemon's version, read once from package.json (the one place it is written).
import { readFileSync } from 'node:fs';

const packageJson = JSON.parse(
  readFileSync(
    new URL(
      import.meta.url.endsWith('.ts') ? '../../package.json' : '../../../package.json',
      import.meta.url,
    ),
    'utf8',
  ),
) as { version: string };

export const VERSION: string = packageJson.version;
