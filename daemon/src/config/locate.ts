// How every `outpost` command finds the daemon's configuration: one rule, for `run` and for the tools
// that talk to a running daemon (`clip`, `chat`, `clips pull`).
//
//   --config FILE   that file;
//   --root DIR      a box provisioned under DIR (`outpost-provision firstboot --root DIR`): the config
//                   DIR/etc/outpost/outpost.yaml, with the paths it names under /etc/outpost and
//                   /var/lib/outpost taken under DIR (so a provisioned hub runs on a development
//                   machine, as its user, without rewriting the file);
//   --defaults      the embedded defaults (`outpost run --defaults`, `npm start`);
//   none            /etc/outpost/outpost.yaml when it exists (a provisioned box); otherwise, for a tool,
//                   the embedded defaults (the daemon `npm start` runs), and for `run`, an error.
import { existsSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { OutpostError } from '../errors.js';
import { DEFAULT_CONFIG_PATH, embeddedDefaults, loadConfig } from './load.js';
import type { Config } from './schema.js';

export interface ConfigChoice {
  config?: string | undefined;
  root?: string | undefined;
  defaults?: boolean | undefined;
}

export interface LocatedConfig {
  config: Config;
  /** Where it came from, for logs and messages: a file, `… under ROOT`, or `embedded defaults`. */
  source: string;
}

/** The folders a provisioned config points into; under `--root` they move with the root. */
const PROVISIONED_DIRS = ['/etc/outpost', '/var/lib/outpost'] as const;

/** The config of a box provisioned under `root`. */
export function rootedConfigPath(root: string): string {
  return join(resolve(root), DEFAULT_CONFIG_PATH);
}

/** `config` with every path under /etc/outpost or /var/lib/outpost taken under `root`. */
export function rerootConfig(config: Config, root: string): Config {
  const base = resolve(root);
  const move = (value: unknown): unknown => {
    if (typeof value === 'string') {
      const under = PROVISIONED_DIRS.some((dir) => value === dir || value.startsWith(`${dir}/`));
      return under && isAbsolute(value) ? join(base, value) : value;
    }
    if (Array.isArray(value)) return value.map(move);
    if (value !== null && typeof value === 'object')
      return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, move(inner)]));
    return value;
  };
  return move(config) as Config;
}

/**
 * The daemon's config by the rule above. `forTool`: with nothing given and no provisioned config,
 * the embedded defaults (what a tool finds after `npm start`); otherwise that is an error.
 */
export async function locateConfig(choice: ConfigChoice, forTool: boolean): Promise<LocatedConfig> {
  const given = [choice.config, choice.root, choice.defaults ? true : undefined].filter(
    (value) => value !== undefined,
  );
  if (given.length > 1)
    throw new OutpostError('USAGE_INVALID', 'give at most one of --config, --root and --defaults', {
      hint: '--config FILE for a config file, --root DIR for a box provisioned under DIR, --defaults for `outpost run --defaults`',
    });
  if (choice.config !== undefined) return { config: await loadConfig(choice.config), source: choice.config };
  if (choice.root !== undefined) {
    const file = rootedConfigPath(choice.root);
    if (!existsSync(file))
      throw new OutpostError(
        'CONFIG_UNREADABLE',
        `no provisioned config under ${resolve(choice.root)} (${file})`,
        {
          hint: `install a bundle there first: outpost-provision firstboot --root ${choice.root} --bundle FILE`,
        },
      );
    return {
      config: rerootConfig(await loadConfig(file), choice.root),
      source: `${file} (paths under ${resolve(choice.root)})`,
    };
  }
  if (choice.defaults) return { config: embeddedDefaults(), source: 'embedded defaults' };
  if (existsSync(DEFAULT_CONFIG_PATH) || !forTool)
    return { config: await loadConfig(DEFAULT_CONFIG_PATH), source: DEFAULT_CONFIG_PATH };
  return { config: embeddedDefaults(), source: 'embedded defaults' };
}
