// Topic contract v1: the JSON Schema files in docs/schemas/ are generated from the zod schemas the
// daemon publishes with, and docs/topics.md names every one. `npm run contract:write` regenerates them.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { contract } from '../../daemon/src/mqtt/contract.js';
import { REPO } from '../support/processes.js';

const SCHEMAS = join(REPO, 'docs/schemas');

function jsonSchemaOf(name: string, schema: z.ZodType): string {
  const generated = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' });
  return `${JSON.stringify({ $id: `https://outpost.invalid/schemas/v1/${name}.schema.json`, ...generated }, null, 2)}\n`;
}

describe('topic contract v1', () => {
  it.each(Object.entries(contract))(
    'docs/schemas/%s.schema.json matches the schema in contract.ts',
    async (name, schema) => {
      const file = join(SCHEMAS, `${name}.schema.json`);
      const expected = jsonSchemaOf(name, schema);
      if (process.env.UPDATE_CONTRACT === '1') await writeFile(file, expected);
      const actual = await readFile(file, 'utf8').catch(() => '(missing)');
      expect(actual, `${file} is stale: run npm run contract:write`).toBe(expected);
    },
  );

  it('docs/topics.md documents every message type and links its schema', async () => {
    const text = await readFile(join(REPO, 'docs/topics.md'), 'utf8');
    for (const name of Object.keys(contract)) expect(text).toContain(`schemas/${name}.schema.json`);
  });
});
