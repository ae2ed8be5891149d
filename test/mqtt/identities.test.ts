import { describe, expect, it } from 'vitest';
import {
  hashPassword,
  IdentityTable,
  parseIdentities,
  verifyPassword,
} from '../../daemon/src/mqtt/identities.js';

describe('identities', () => {
  it('a password hash verifies the right password and refuses a wrong one', async () => {
    const hash = await hashPassword('correct horse');
    expect(hash).toMatch(/^scrypt\$ln=14,r=8,p=1\$/);
    expect(hash).not.toContain('correct horse');
    expect(await verifyPassword('correct horse', hash)).toBe(true);
    expect(await verifyPassword('correct hors', hash)).toBe(false);
    expect(await verifyPassword('correct horse', 'plain-text')).toBe(false);
  });

  it('the table authenticates by password and by certificate CN only where allowed', async () => {
    const file = parseIdentities(
      JSON.stringify({
        version: 1,
        site: 'plant',
        identities: [
          { name: 'cam-a', role: 'device', password: await hashPassword('pw-a') },
          { name: 'console', role: 'console', certificate: true },
        ],
      }),
      'identities.json',
    );
    const table = new IdentityTable(file.identities);
    expect(await table.byPassword('cam-a', 'pw-a')).toEqual({ name: 'cam-a', role: 'device' });
    expect(await table.byPassword('cam-a', 'pw-b')).toBeUndefined();
    expect(await table.byPassword('nobody', 'pw-a')).toBeUndefined();
    expect(await table.byPassword('console', '')).toBeUndefined();
    expect(table.byCertificate('console')).toEqual({ name: 'console', role: 'console' });
    expect(table.byCertificate('cam-a')).toBeUndefined();
  });

  it('a file with a plain-text password, a bad role, a duplicate or an unusable identity is refused, naming each', async () => {
    const file = (identities: unknown[]) => JSON.stringify({ version: 1, site: 'plant', identities });
    expect(() =>
      parseIdentities(
        file([
          { name: 'cam-a', role: 'device', password: 'hunter2' },
          { name: 'cam-b', role: 'wizard', certificate: true },
        ]),
        'ids.json',
      ),
    ).toThrow(
      /^ids\.json: identities\.0\.password: .*never plain text; identities\.1\.role: role must be one of/,
    );
    const hash = await hashPassword('x');
    expect(() =>
      parseIdentities(
        file([
          { name: 'cam-b', role: 'device' },
          { name: 'cam-c', role: 'device', password: hash },
          { name: 'cam-c', role: 'device', password: hash },
        ]),
        'ids.json',
      ),
    ).toThrow(
      /identities\.0: identity cam-b has neither .*; identities\.2\.name: identity cam-c appears twice/,
    );
    expect(() => parseIdentities('{', 'ids.json')).toThrow(/ids\.json is not valid JSON/);
  });
});
