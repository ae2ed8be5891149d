// The `outpost` command's MQTT verbs reach the box's broker as local-admin, reading the password file
// whose name they take from local-admin.ts; they must not load the broker itself (Aedes, LevelDB, ws,
// and a process-wide switch on mqtt-packet's writer) just to learn that name.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../support/processes.js';

/** Every module a source file loads when it is imported: its static imports, followed (type-only ones skipped). */
function staticImports(entry: string): Set<string> {
  const seen = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop() as string;
    if (seen.has(file)) continue;
    seen.add(file);
    if (!file.endsWith('.ts')) continue;
    const source = readFileSync(file, 'utf8');
    for (const match of source.matchAll(/^(?:import|export)\s+(?!type\b)[^;]*?\sfrom\s+'([^']+)'/gms)) {
      const specifier = match[1] as string;
      if (specifier.startsWith('.')) queue.push(resolve(dirname(file), specifier.replace(/\.js$/, '.ts')));
      else seen.add(specifier);
    }
    for (const match of source.matchAll(/^import\s+'([^']+)'/gm)) seen.add(match[1] as string);
  }
  return seen;
}

describe('local-admin', () => {
  it('the outpost CLI loads neither the broker nor Aedes, LevelDB or ws until `outpost run` starts the daemon', () => {
    const loaded = staticImports(join(REPO, 'daemon/src/cli.ts'));
    expect(loaded.has(join(REPO, 'daemon/src/mqtt/local-admin.ts'))).toBe(true);
    const heavy = [...loaded].filter(
      (module) =>
        module === join(REPO, 'daemon/src/mqtt/broker.ts') ||
        ['aedes', 'aedes-persistence-level', 'level', 'ws'].includes(module),
    );
    expect(heavy).toEqual([]);
  });
});
