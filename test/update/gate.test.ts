// The health gate on file slots with RAUC's own service (test/support/rauc.ts): a slot on trial is
// committed once the daemon reports healthy; it is rejected (marked bad, reboot) when the daemon's unit
// fails or the window ends unhealthy, and the old slot then records the rollback with that reason; a
// trial or an install cut short by a power cut is recorded too. systemd-boot's counting is done by
// hand here (renaming +1 to +0-1, as it does before starting a slot on trial); the reboot is recorded.
import { readdirSync, renameSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runGate, type GateDeps, type UnitState } from '../../daemon/src/update/gate.js';
import { runCliToEnd } from '../support/processes.js';
import { raucBox, raucUnavailable, type RaucBox } from '../support/rauc.js';

const unavailable = raucUnavailable();
const log = pino({ level: 'silent' });
const running: UnitState = {
  activeState: 'active',
  subState: 'running',
  result: 'success',
  restarts: 0,
  exitStatus: 0,
};

const entries = (box: RaucBox): string[] => readdirSync(join(box.esp, 'loader/entries')).sort();
const state = async (box: RaucBox) =>
  JSON.parse(await readFile(join(box.paths.updateDir, 'state.json'), 'utf8')) as {
    phase: string;
    reason: string | null;
    from: { slot: string };
    target: { version: string; slot: string };
  };

/** systemd-boot before starting a slot on trial: one try used. */
function countTry(box: RaucBox): void {
  const dir = join(box.esp, 'loader/entries');
  for (const name of readdirSync(dir)) {
    const match = /^(outpost-\d+-[ab])\+1\.conf$/.exec(name);
    if (match) renameSync(join(dir, name), join(dir, `${match[1]}+0-1.conf`));
  }
}

async function healthy(box: RaucBox, report: object): Promise<void> {
  await mkdir(dirname(box.paths.healthFile), { recursive: true });
  await writeFile(box.paths.healthFile, JSON.stringify({ version: '2.0.0', at: Date.now(), ...report }));
}

describe.skipIf(unavailable !== undefined)('update health gate (RAUC on file slots)', () => {
  let box: RaucBox;
  let reboots: number;
  let stopped: number;
  const gate = (extra: Partial<GateDeps> = {}) =>
    runGate({
      paths: box.paths,
      log,
      windowMs: 20_000,
      settleMs: 0,
      pollMs: 50,
      daemonUnit: () => Promise.resolve(running),
      reboot: () => {
        reboots += 1;
        return Promise.resolve();
      },
      stopDeadline: () => {
        stopped += 1;
        return Promise.resolve();
      },
      ...extra,
    });

  beforeEach(async () => {
    box = await raucBox('1.0.0');
    // The gate's default `mark` asks RAUC's service, on the box's bus.
    Object.assign(process.env, {
      DBUS_SESSION_BUS_ADDRESS: box.env.DBUS_SESSION_BUS_ADDRESS,
      DBUS_STARTER_BUS_TYPE: 'session',
    });
    reboots = 0;
    stopped = 0;
    const installed = await runCliToEnd(
      ['update', 'install', box.bundle('v2', { version: '2.0.0' }), '--no-reboot'],
      box.env,
    );
    expect(installed.code, installed.stderr).toBe(0);
    expect(entries(box)).toEqual(['outpost-1-a.conf', 'outpost-2-b+1.conf']);
  }, 120_000);
  afterEach(async () => {
    await box?.close();
  });

  it('commits a slot on trial once the daemon reports every subsystem healthy', async () => {
    countTry(box);
    await box.bootAs('B');
    await healthy(box, { healthy: true, unhealthy: [], healthySince: Date.now() - 60_000 });
    expect(await gate()).toBe('committed');
    expect(entries(box)).toEqual(['outpost-1-a.conf', 'outpost-2-b.conf']);
    expect(await state(box)).toMatchObject({ phase: 'committed', target: { version: '2.0.0', slot: 'B' } });
    expect([reboots, stopped]).toEqual([0, 1]);
  });

  it('does not commit on a health report of another version (the old daemon’s)', async () => {
    countTry(box);
    await box.bootAs('B');
    await healthy(box, { version: '1.0.0', healthy: true, unhealthy: [], healthySince: 0 });
    expect(await gate({ windowMs: 500 })).toBe('rejected');
    expect((await state(box)).reason).toMatch(/did not reach READY within 0\.5 s|was not healthy/);
  });

  it('an install made during this boot (--no-reboot) waits for the next boot', async () => {
    expect(await gate({ bootedAt: () => Promise.resolve(Date.now() - 3_600_000) })).toBe('nothing');
    expect(entries(box)).toEqual(['outpost-1-a.conf', 'outpost-2-b+1.conf']);
  });

  it('rejects the slot when the daemon cannot start, and the old slot records the rollback and why', async () => {
    countTry(box);
    await box.bootAs('B');
    const failed: UnitState = {
      activeState: 'failed',
      subState: 'failed',
      result: 'exit-code',
      restarts: 5,
      exitStatus: 3,
    };
    expect(await gate({ daemonUnit: () => Promise.resolve(failed) })).toBe('rejected');
    expect(reboots).toBe(1);
    // Out of the boot order: the next boot is slot A's.
    expect(entries(box)).toEqual(['outpost-1-a.conf']);
    const reason = /outpost\.service failed \(exit-code, exit status 3\) after 5 restarts/;
    expect((await state(box)).reason).toMatch(reason);
    await box.bootAs('A');
    expect(await gate()).toBe('rolled-back');
    expect(await state(box)).toMatchObject({
      phase: 'rolled-back',
      from: { slot: 'A' },
      target: { version: '2.0.0', slot: 'B' },
    });
    expect((await state(box)).reason).toMatch(reason);
  });

  it('rejects the slot when the window ends with a subsystem unhealthy, naming it', async () => {
    countTry(box);
    await box.bootAs('B');
    await healthy(box, { healthy: false, unhealthy: ['camera cam0'], healthySince: null });
    expect(await gate({ windowMs: 300 })).toBe('rejected');
    expect((await state(box)).reason).toMatch(/was not healthy for 0 s within 0\.3 s: unhealthy camera cam0/);
  });

  it('a trial cut short (crash, hang or power cut: the try used, slot A started) is a rollback', async () => {
    countTry(box);
    await box.bootAs('A');
    expect(await gate({ bootedAt: () => Promise.resolve(Date.now()) })).toBe('rolled-back');
    expect((await state(box)).reason).toMatch(/was started on trial but never committed/);
    expect(entries(box)).toEqual(['outpost-1-a.conf']);
  });

  it('an install cut short by a power cut leaves slot A running and slot B out of the boot order', async () => {
    const current = await state(box);
    await writeFile(
      join(box.paths.updateDir, 'state.json'),
      JSON.stringify({ ...current, phase: 'installing', progress: 40 }),
    );
    expect(await gate()).toBe('interrupted');
    expect(await state(box)).toMatchObject({ phase: 'failed' });
    expect(entries(box)).toEqual(['outpost-1-a.conf']);
  });
});
