// Reads the YAML config file and validates it against the one schema, reporting *every* problem with
// its key path, the value found, the line it is on and a hint, instead of stopping at the first.
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { isMap, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { ConfigError, OutpostError, type ConfigProblem } from '../errors.js';
import { configSchema, SECRET_KEYS, type Config } from './schema.js';

export const DEFAULT_CONFIG_PATH = '/etc/outpost/outpost.yaml';

/**
 * The configuration a box runs with when it has no file: one test camera, broker on loopback, a Janus
 * of its own on loopback, and the site console on https://127.0.0.1:8443 with a development login.
 */
export function embeddedDefaults(): Config {
  // Not /var/lib/outpost: a developer's `npm start` runs as themselves, not as the outpost user.
  const dataDir = process.env.STATE_DIRECTORY ?? join(homedir(), '.local', 'state', 'outpost');
  return configSchema.parse({
    dataDir,
    sfu: { mode: 'janus', janus: { launch: true } },
    // A moving ball, so the console shows at a glance that the picture is live.
    cameras: [{ name: 'cam0', source: { type: 'test', pattern: 'ball' } }],
    console: { host: '127.0.0.1', devLogin: true },
  });
}

/** Read and validate a config file. Throws ConfigError listing every problem found. */
export function loadConfig(file: string): Promise<Config> {
  return loadConfigWith(configSchema, file);
}

/** Read a config file against `schema` (the daemon's, or the centre console's), reporting every problem. */
export async function loadConfigWith<S extends z.ZodType>(schema: S, file: string): Promise<z.output<S>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : 'cannot be read';
    throw new OutpostError('CONFIG_UNREADABLE', `config file ${file} ${reason}`, {
      hint: `check the path and permissions, or pass another file with --config`,
      cause: error,
    });
  }
  return parseConfigWith(schema, text, file);
}

/** Validate YAML text; `source` names it in messages. */
export function parseConfig(text: string, source: string): Config {
  return parseConfigWith(configSchema, text, source);
}

function parseConfigWith<S extends z.ZodType>(schema: S, text: string, source: string): z.output<S> {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => ({
        path: '',
        line: lines.linePos(e.pos[0]).line,
        value: undefined,
        message: `YAML syntax: ${e.message.split('\n')[0] ?? e.message}`,
      })),
    );
  }
  const raw: unknown = doc.toJS() ?? {};
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  throw new ConfigError(source, describeIssues(schema, result.error.issues, raw, doc, lines));
}

function describeIssues(
  root: z.core.$ZodType,
  issues: readonly z.core.$ZodIssue[],
  raw: unknown,
  doc: Document,
  lines: LineCounter,
): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      const allowed = allowedKeysAt(root, issue.path, raw);
      for (const key of issue.keys) {
        const path = [...issue.path, key];
        const guess = closest(key, allowed);
        const hint = guess ? `did you mean "${guess}"?` : `allowed here: ${allowed.join(', ') || 'none'}`;
        problems.push({
          path: formatPath(path),
          line: lineOf(doc, lines, path, true),
          value: valueAt(raw, path),
          message: `unknown key; ${hint}`,
        });
      }
      continue;
    }
    const path = issue.path;
    // A bad secret (an SRTP key of the wrong length) is reported without repeating it.
    const last = path.at(-1);
    const found = valueAt(raw, path);
    const value =
      found !== undefined && typeof last === 'string' && SECRET_KEYS.has(last) ? '<redacted>' : found;
    const missing = value === undefined && issue.code === 'invalid_type';
    problems.push({
      path: formatPath(path),
      line: lineOf(doc, lines, path, missing),
      value,
      message: missing ? 'required key is missing' : issue.message,
    });
  }
  return problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
}

/** `['cameras', 0, 'rtp', 'port']` → `cameras[0].rtp.port` */
export function formatPath(path: readonly PropertyKey[]): string {
  return path
    .map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? String(part) : `.${String(part)}`))
    .join('');
}

function valueAt(raw: unknown, path: readonly PropertyKey[]): unknown {
  let node: unknown = raw;
  for (const part of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[part];
  }
  return node;
}

/** Line of the value at `path` (or of its key); for a missing key, the line of its parent. */
function lineOf(
  doc: Document,
  lines: LineCounter,
  path: readonly PropertyKey[],
  preferKey: boolean,
): number | undefined {
  for (let depth = path.length; depth >= 0; depth--) {
    const parentPath = path.slice(0, Math.max(0, depth - 1));
    const last = path[depth - 1];
    const parent = depth === 0 ? doc.contents : doc.getIn(parentPath as unknown[], true);
    if (preferKey && depth > 0 && isMap(parent)) {
      const pair = parent.items.find((p) => (p.key as { value?: unknown } | null)?.value === last);
      const range = (pair?.key as { range?: [number, number, number] } | null)?.range;
      if (range) return lines.linePos(range[0]).line;
    }
    const node = depth === 0 ? doc.contents : doc.getIn(path.slice(0, depth) as unknown[], true);
    const range = (node as { range?: [number, number, number] } | null | undefined)?.range;
    if (range) return lines.linePos(range[0]).line;
  }
  return undefined;
}

/** The keys the schema accepts at `path` (an object's path), for "did you mean" hints. */
function allowedKeysAt(root: z.core.$ZodType, path: readonly PropertyKey[], raw: unknown): string[] {
  let schema: z.core.$ZodType | undefined = root;
  for (let i = 0; i <= path.length && schema; i++) {
    schema = unwrap(schema, valueAt(raw, path.slice(0, i)));
    if (i === path.length) break;
    const part = path[i];
    const def = schema._zod.def as {
      type: string;
      shape?: Record<string, z.core.$ZodType>;
      element?: z.core.$ZodType;
    };
    if (def.type === 'object' && typeof part === 'string') schema = def.shape?.[part];
    else if (def.type === 'array') schema = def.element;
    else schema = undefined;
  }
  const def = schema?._zod.def as { type: string; shape?: Record<string, unknown> } | undefined;
  return def?.type === 'object' && def.shape ? Object.keys(def.shape) : [];
}

/** Strip defaults/optionals; pick the union member whose discriminator matches the raw value. */
function unwrap(schema: z.core.$ZodType, raw: unknown): z.core.$ZodType {
  let current = schema;
  for (;;) {
    const def = current._zod.def as {
      type: string;
      innerType?: z.core.$ZodType;
      options?: z.core.$ZodType[];
      discriminator?: string;
    };
    if (def.innerType && ['default', 'prefault', 'optional', 'nullable'].includes(def.type)) {
      current = def.innerType;
    } else if (def.type === 'union' && def.options && def.discriminator) {
      const tag = (raw as Record<string, unknown> | undefined)?.[def.discriminator];
      const match = def.options.find((option) => {
        const shape = (option._zod.def as { shape?: Record<string, z.core.$ZodType> }).shape;
        const literal = shape?.[def.discriminator ?? '']?._zod.def as { values?: unknown[] } | undefined;
        return literal?.values?.includes(tag);
      });
      if (!match) return current;
      current = match;
    } else {
      return current;
    }
  }
}

/** The allowed key nearest to a typo, when it is near enough to be a typo. */
function closest(key: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1;
  for (const candidate of allowed) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row.push(Math.min((previous[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost));
    }
    previous = row;
  }
  return previous[b.length] ?? 0;
}

/** A deep copy with every secret value replaced, for printing and logging. */
export function redactSecrets<T>(value: T): T {
  if (Array.isArray(value)) return value.map((item: unknown) => redactSecrets(item)) as T;
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, inner]) => [
      key,
      SECRET_KEYS.has(key) && inner !== undefined ? '<redacted>' : redactSecrets(inner),
    ]),
  ) as T;
}
