// The health gate (outpost-update-gate.service, root, at every boot; docs/updates.md, "Health gate").
// A slot booted on trial is committed only when the daemon has reached READY and reported every
// subsystem healthy, without a break, for `settle` seconds, within `window` seconds of the gate's start.
// If the daemon's unit fails (it cannot start: systemd gave up restarting it) or the window ends, the
// gate marks the slot bad and reboots: the boot backend starts the committed slot again. On the old
// slot, a trial that did not commit (the gate gave up, or a crash, hang or power cut used the slot's
// one try) is recorded as rolled back, with the reason when the gate on the new slot could write one.
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { describeError } from '../errors.js';
import { backend, takeLock, type UpdateLog } from './install.js';
import { bootedSlot, readRelease, type Slot } from './release.js';
import { run } from './run.js';
import { readState, writeState, type UpdatePaths, type UpdateState } from './state.js';

/** What the daemon writes for the gate (update/report.ts), on tmpfs. */
export const healthReportSchema = z.strictObject({
  version: z.string(),
  /** Every subsystem started (READY) and healthy now. */
  healthy: z.boolean(),
  /** The subsystems that are not, by name. */
  unhealthy: z.array(z.string()),
  /** Since when it has been healthy without a break (ms since the epoch); null when it is not. */
  healthySince: z.int().nonnegative().nullable(),
  at: z.int().nonnegative(),
});
export type HealthReport = z.output<typeof healthReportSchema>;

export interface UnitState {
  activeState: string;
  subState: string;
  result: string;
  restarts: number;
  exitStatus: number;
}

export interface GateDeps {
  paths: UpdatePaths;
  log: UpdateLog;
  windowMs: number;
  settleMs: number;
  pollMs?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  rauc?: string;
  /** outpost.service as systemd sees it. */
  daemonUnit?: () => Promise<UnitState>;
  /** Commit or reject the booted slot: rauc status mark-good|mark-bad. */
  mark?: (how: 'good' | 'bad', slot: 'booted' | Slot) => Promise<void>;
  /** The gate committed: the safety net (outpost-update-deadline.service) is stopped. */
  stopDeadline?: () => Promise<void>;
  reboot?: () => Promise<void>;
  /** When this boot began (ms since the epoch); default from /proc/uptime. */
  bootedAt?: () => Promise<number>;
}

export type GateOutcome = 'nothing' | 'committed' | 'rejected' | 'rolled-back' | 'interrupted';

async function systemdUnit(): Promise<UnitState> {
  const result = await run(
    'systemctl',
    ['show', 'outpost.service', '-p', 'ActiveState,SubState,Result,NRestarts,ExecMainStatus'],
    { timeoutMs: 30_000 },
  );
  const fields = new Map(
    result.stdout
      .split('\n')
      .map((line) => line.split('='))
      .map(([key, ...value]) => [key ?? '', value.join('=')]),
  );
  return {
    activeState: fields.get('ActiveState') ?? 'unknown',
    subState: fields.get('SubState') ?? 'unknown',
    result: fields.get('Result') ?? 'unknown',
    restarts: Number(fields.get('NRestarts') ?? 0),
    exitStatus: Number(fields.get('ExecMainStatus') ?? 0),
  };
}

async function readHealth(file: string): Promise<HealthReport | undefined> {
  try {
    const parsed = healthReportSchema.safeParse(JSON.parse(await readFile(file, 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** When this boot began (ms since the epoch), from /proc/uptime. */
async function bootedAt(now: number): Promise<number> {
  const uptime = Number((await readFile('/proc/uptime', 'utf8').catch(() => '0')).split(' ')[0]);
  return now - uptime * 1000;
}

export async function runGate(deps: GateDeps): Promise<GateOutcome> {
  const { paths, log } = deps;
  const now = deps.now ?? Date.now;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const rauc = deps.rauc ?? 'rauc';
  const mark =
    deps.mark ??
    (async (how: 'good' | 'bad', slot: 'booted' | Slot) => {
      const name = slot === 'booted' ? 'booted' : `rootfs.${slot === 'A' ? 0 : 1}`;
      const result = await run(rauc, ['status', `mark-${how}`, name], { timeoutMs: 120_000 });
      if (result.status !== 0) throw new Error(`rauc status mark-${how} ${name}: ${result.stderr.trim()}`);
    });
  const reboot =
    deps.reboot ?? (() => run('systemctl', ['reboot'], { timeoutMs: 60_000 }).then(() => undefined));
  const stopDeadline =
    deps.stopDeadline ??
    (() =>
      run('systemctl', ['stop', 'outpost-update-deadline.service'], { timeoutMs: 60_000 }).then(
        () => undefined,
      ));
  const daemonUnit = deps.daemonUnit ?? systemdUnit;

  const state = await readState(paths);
  const target = state?.target;
  if (!state || !['installing', 'rebooting', 'trial'].includes(state.phase) || !target?.slot) {
    return 'nothing';
  }
  const targetSlot: Slot = target.slot;
  const booted = await bootedSlot(paths.cmdline);
  const write = (next: Partial<UpdateState> & Pick<UpdateState, 'phase'>): Promise<void> =>
    writeState(paths, { ...state, progress: null, ...next, since: now() });

  if (booted !== targetSlot) {
    // Still on the old slot: an install cut short, or a trial that did not commit.
    if (state.phase === 'rebooting' && state.since > (await (deps.bootedAt?.() ?? bootedAt(now())))) {
      return 'nothing'; // installed during this boot (--no-reboot): the next boot tries it
    }
    let unlock: (() => Promise<void>) | undefined;
    try {
      unlock = await takeLock(paths);
    } catch {
      return 'nothing'; // an install is running right now
    }
    try {
      await mark('bad', targetSlot).catch((error: unknown) =>
        log.warn({ event: 'update-mark-failed', err: describeError(error) }, 'could not mark the slot bad'),
      );
      if (state.phase === 'installing') {
        const reason = `the install of ${target.version} into slot ${target.slot} was cut short (power cut or crash); slot ${target.slot} is out of the boot order and slot ${booted ?? '?'} is unchanged`;
        await write({ phase: 'failed', reason, code: 'UPDATE_INSTALL_FAILED' });
        log.warn({ event: 'update-interrupted', slot: target.slot, version: target.version, reason }, reason);
        return 'interrupted';
      }
      const reason =
        state.reason ??
        `slot ${target.slot} (${target.version}) was started on trial but never committed: a crash, hang or power cut before the health check ended used its one try`;
      await write({
        phase: 'rolled-back',
        from: { version: (await readRelease(paths.releaseFile)).version, slot: booted },
        reason,
        code: null,
      });
      log.error(
        { event: 'update-rolled-back', slot: target.slot, version: target.version, running: booted, reason },
        `rolled back to slot ${booted ?? '?'}: ${reason}`,
      );
      return 'rolled-back';
    } finally {
      await unlock?.();
    }
  }

  // On the new slot, on trial.
  const trial = await backend(paths, ['is-trial']);
  if (trial.status !== 0) {
    // Committed already (a power cut between RAUC's mark-good and the state file): say so.
    await write({ phase: 'committed', reason: null, code: null });
    log.info({ event: 'update-committed', slot: booted, version: target.version }, 'slot committed earlier');
    return 'committed';
  }
  await write({ phase: 'trial', reason: null, code: null });
  log.info(
    { event: 'update-trial', slot: booted, version: target.version, windowSeconds: deps.windowMs / 1000 },
    `slot ${booted} (${target.version}) on trial: committing it once the daemon is healthy`,
  );
  const started = now();
  let reason: string | undefined;
  let last: HealthReport | undefined;
  for (;;) {
    const health = await readHealth(paths.healthFile);
    if (health) last = health;
    if (
      health?.healthy &&
      health.version === target.version &&
      health.healthySince !== null &&
      now() - health.healthySince >= deps.settleMs
    ) {
      break;
    }
    const unit = await daemonUnit();
    if (unit.activeState === 'failed') {
      reason = `outpost.service failed (${unit.result}, exit status ${unit.exitStatus}) after ${unit.restarts} restarts: the daemon of ${target.version} cannot start`;
      break;
    }
    if (now() - started >= deps.windowMs) {
      reason =
        last === undefined
          ? `the daemon of ${target.version} did not reach READY within ${deps.windowMs / 1000} s (outpost.service ${unit.activeState}/${unit.subState}, ${unit.restarts} restarts)`
          : `the daemon of ${target.version} was not healthy for ${deps.settleMs / 1000} s within ${deps.windowMs / 1000} s${last.unhealthy.length > 0 ? `: unhealthy ${last.unhealthy.join(', ')}` : ''}`;
      break;
    }
    await sleep(deps.pollMs ?? 2_000);
  }
  if (reason === undefined) {
    await mark('good', 'booted');
    await stopDeadline().catch(() => undefined);
    await write({ phase: 'committed', reason: null, code: null });
    log.info(
      { event: 'update-committed', slot: booted, version: target.version, seconds: (now() - started) / 1000 },
      `slot ${booted} (${target.version}) committed: the daemon is READY and healthy`,
    );
    return 'committed';
  }
  // The reason is kept for the old slot's report; then out of the boot order, and back.
  await write({ phase: 'trial', reason, code: null });
  log.error(
    { event: 'update-rejected', slot: booted, version: target.version, reason },
    `rejecting slot ${booted}: ${reason}`,
  );
  await mark('bad', 'booted');
  await reboot();
  return 'rejected';
}
