// The read scope the broker checks at every delivery (authorizeForward) is a fast form of the
// subscribe column of the ACL: for any concrete topic the two must agree, or a delivery check would
// let through what a subscription could not ask for (or drop what it could).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { mayPublish, maySubscribe, ReadScope } from '../../daemon/src/mqtt/acl.js';
import { ROLES, type Identity } from '../../daemon/src/mqtt/identities.js';

const SITE = 'plant';
const TOPICS = [
  'outpost/v1/plant',
  'outpost/v1/plant/cam-a/status',
  'outpost/v1/plant/cam-a/cmd',
  'outpost/v1/plant/cam-a/cmd/ping',
  'outpost/v1/plant/cam-a/cmdx/ping',
  'outpost/v1/plant/cam-ab/cmd/ping',
  'outpost/v1/plant/cam-b/cmd/ping',
  'outpost/v1/plant/cam-a/clip/c1/chunk/3',
  'outpost/v1/plant/chat',
  'outpost/v1/plant/chat/ops',
  'outpost/v1/plant/chat/ops/history',
  'outpost/v1/plant/chatter/ops',
  'outpost/v1/plantx/cam-a/status',
  'outpost/v1/other/chat/ops',
  'outpost/v1',
  '$SYS/broker/heartbeat',
  'anything/else',
];

describe('ACL read scope', () => {
  it('agrees with the subscribe rules for every role on concrete topics', () => {
    for (const role of ROLES) {
      const identity: Identity = { name: 'cam-a', role };
      const scope = ReadScope.of(identity, SITE);
      for (const topic of TOPICS) {
        expect([role, topic, scope.allows(topic)]).toEqual([
          role,
          topic,
          maySubscribe(identity, SITE, topic),
        ]);
      }
    }
  });

  it('NOTHING allows nothing', () => {
    expect(TOPICS.some((topic) => ReadScope.NOTHING.allows(topic))).toBe(false);
  });
});

describe('ACL publish rules', () => {
  it('no identity, admin included, publishes on a $ topic, as docs/topics.md and acl.ts say', () => {
    const admin: Identity = { name: 'root', role: 'admin' };
    for (const topic of ['$SYS/broker/heartbeat', '$outpost/refused', '$anything/else']) {
      expect(mayPublish(admin, SITE, topic), topic).toBe(false);
    }
    expect(mayPublish(admin, SITE, 'anything/else')).toBe(true);
    const row = readFileSync('docs/topics.md', 'utf8')
      .split('\n')
      .find((line) => line.startsWith('| admin '));
    expect(row).toMatch(/anything not starting with `\$`/);
    const header = readFileSync('daemon/src/mqtt/acl.ts', 'utf8').split('\n').slice(0, 12).join('\n');
    expect(header).toMatch(/admin\s+publishes\s+anything not starting with \$/);
  });
});
