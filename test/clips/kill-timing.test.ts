// An alert that survives always gets its clip or its clip-failed, however soon after the press the
// daemon is killed. The built daemon runs as a camera box at a test hub with a console subscribed
// there; a clip is asked for over the box's own broker (`cmd/clip`, as `outpost clip` does), and the
// daemon is killed with -9 at 0, 1, 2, 5, 10 and 50 ms after the press, then started again. The press
// time is the alert's own `at` (the daemon stamps it as it raises the alert) and the kill is sent by a
// separate process that spins to the planned instant, so the offsets reported are the ones that
// happened, measured, not the ones planned. A round whose alert reached the console must end with
// that clip's manifest or its clip-failed there; a round without an alert promised nothing.
//
// KILL_TIMING_REPEATS (default 1) runs each offset more times; the table goes to stdout.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connectAsync, type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { connectAs, SITE, startTestBroker, type TestBroker } from '../support/broker.js';
import { cameraBoxConfig, testCameraYaml } from '../support/box.js';
import { cliRuns, until, type Run } from '../support/processes.js';

const { start, stopAll } = cliRuns();
let hub: TestBroker | undefined;
const clients: MqttClient[] = [];
let killer: ChildProcessWithoutNullStreams | undefined;

afterEach(async () => {
  killer?.kill('SIGKILL');
  killer = undefined;
  await stopAll();
  for (const client of clients.splice(0)) await client.endAsync(true);
  await hub?.stop();
  hub = undefined;
});

const OFFSETS_MS = [0, 1, 2, 5, 10, 50];
const REPEATS = Number(process.env.KILL_TIMING_REPEATS ?? 1);

interface Seen {
  kind: string;
  clipId: string;
  at: number;
}

/**
 * A process that kills `pid` with SIGKILL when told a wall time (sub-millisecond, spinning for the last
 * stretch), and reports the wall time it did so. Separate, so that neither the hub nor the console in
 * this process is held up while it waits.
 */
function startKiller(): {
  killAt(pid: number, at: number): Promise<number>;
} {
  const child = spawn(
    process.execPath,
    [
      '-e',
      `
      const now = () => performance.timeOrigin + performance.now();
      let buffered = '';
      process.stdin.on('data', (chunk) => {
        buffered += chunk;
        let newline;
        while ((newline = buffered.indexOf('\\n')) >= 0) {
          const [pid, at] = buffered.slice(0, newline).split(' ').map(Number);
          buffered = buffered.slice(newline + 1);
          const spin = () => {
            if (at - now() > 3) return setTimeout(spin, 1);
            while (now() < at);
            const killedAt = now();
            try { process.kill(pid, 'SIGKILL'); } catch {}
            process.stdout.write(killedAt + '\\n');
          };
          spin();
        }
      });
      `,
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  killer = child;
  let out = '';
  const waiting: ((at: number) => void)[] = [];
  child.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    let newline;
    while ((newline = out.indexOf('\n')) >= 0) {
      const at = Number(out.slice(0, newline));
      out = out.slice(newline + 1);
      waiting.shift()?.(at);
    }
  });
  return {
    killAt(pid, at) {
      const killed = new Promise<number>((resolve) => waiting.push(resolve));
      child.stdin.write(`${pid} ${at}\n`);
      return killed;
    },
  };
}

/** The box's own broker, as local-admin (what `outpost clip` connects to). */
async function boxBroker(dataDir: string, port: number): Promise<MqttClient> {
  const password = (await readFile(join(dataDir, 'local-admin.password'), 'utf8')).trim();
  const client = await connectAsync(`mqtt://127.0.0.1:${port}`, {
    username: 'local-admin',
    password,
    reconnectPeriod: 0,
    connectTimeout: 5000,
  });
  clients.push(client);
  return client;
}

describe('a kill right after a press', () => {
  it(
    'every alert that reaches the console is followed by its clip or its clip-failed, for kills 0–50 ms after the press',
    async () => {
      hub = await startTestBroker();
      const seen: Seen[] = [];
      const console = await connectAs(hub, 'console');
      clients.push(console);
      console.on('message', (topic, payload) => {
        if (topic.endsWith('/alert')) {
          const alert = JSON.parse(payload.toString()) as { kind: string; clipId?: string; at: number };
          if (alert.clipId) seen.push({ kind: alert.kind, clipId: alert.clipId, at: alert.at });
        }
        const manifest = /\/clip\/([^/]+)$/.exec(topic);
        if (manifest?.[1]) seen.push({ kind: 'manifest', clipId: manifest[1], at: Date.now() });
      });
      await console.subscribeAsync([`outpost/v1/${SITE}/cam-a/alert`, `outpost/v1/${SITE}/cam-a/clip/+`], {
        qos: 1,
      });
      const brokerPortLine = (text: string) => Number(/broker:\n {2}tcp:\n {4}port: (\d+)/.exec(text)?.[1]);
      const { file, dataDir } = await cameraBoxConfig(hub.mqttsPort, [
        await testCameraYaml(),
        'clips:\n  preRollSeconds: 1\n  postRollSeconds: 2',
      ]);
      const port = brokerPortLine(await readFile(file, 'utf8'));
      const kill = startKiller();

      const startBox = async (): Promise<{ daemon: Run; local: MqttClient }> => {
        const daemon = start(['run', '--config', file]);
        await daemon.waitForLog((line) => line.msg === 'outpost running', 60_000);
        await daemon.waitForLog((line) => line.msg === 'uplink connected', 30_000);
        // Pressed on a box that is streaming, not one still starting its camera.
        await daemon.waitForLog((line) => line.msg === 'camera state' && line.state === 'streaming', 30_000);
        return { daemon, local: await boxBroker(dataDir, port) };
      };
      const press = (local: MqttClient, id: string) =>
        local.publishAsync(
          `outpost/v1/${SITE}/cam-a/cmd/clip`,
          JSON.stringify({ id, args: { via: 'cli' } }),
          { qos: 0 },
        );

      let box = await startBox();
      // How long a press takes from here to the daemon's alert stamp (a round that is not killed).
      const calibration: number[] = [];
      for (let i = 0; i < 3; i += 1) {
        const sentAt = performance.timeOrigin + performance.now();
        const count = seen.length;
        await press(box.local, `calibrate-${i}`);
        await until(() => seen.slice(count).some((s) => s.kind === 'panic'), 10_000, 'the calibration alert');
        const alert = seen.slice(count).find((s) => s.kind === 'panic');
        calibration.push((alert?.at ?? sentAt) - sentAt);
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
      const lead = calibration.sort((a, b) => a - b)[1] ?? 1;

      const rounds: {
        planned: number;
        /** From sending the request to the kill: for a round without an alert, all there is. */
        sentToKill: number;
        offset: number | undefined;
        clipId: string | undefined;
        outcome: 'clip' | 'clip-failed' | 'nothing' | 'no alert' | 'no alert, clip-failed';
      }[] = [];
      for (let repeat = 0; repeat < REPEATS; repeat += 1) {
        for (const planned of OFFSETS_MS) {
          const sentAt = performance.timeOrigin + performance.now();
          const killed = kill.killAt(box.daemon.child.pid ?? 0, sentAt + lead + planned);
          void press(box.local, `round-${repeat}-${planned}`).catch(() => undefined);
          const killedAt = await killed;
          await box.daemon.exited();
          box.local.end(true);
          box = await startBox();
          // The alert of this round, if any: raised after this round's press was sent.
          const alertOf = () => seen.find((s) => s.kind === 'panic' && s.at >= Math.floor(sentAt));
          // Whatever the last run stored for the hub is sent once the uplink is back; give it time.
          await until(() => alertOf() !== undefined, 3000, 'the alert').catch(() => undefined);
          const alert = alertOf();
          if (!alert) {
            // Killed before the alert left: the press may still have been written down, and then its
            // clip-failed comes (for a clip id whose second is this round's).
            const second = (at: number) => new Date(at).toISOString().replace(/[-:]/g, '').slice(0, 15);
            const failedOnly = seen.find(
              (s) =>
                s.kind === 'clip-failed' &&
                !seen.some((p) => p.kind === 'panic' && p.clipId === s.clipId) &&
                [second(sentAt), second(sentAt + 1000)].includes(s.clipId.slice(0, 15)),
            );
            rounds.push({
              planned,
              sentToKill: Math.round((killedAt - sentAt) * 10) / 10,
              offset: undefined,
              clipId: failedOnly?.clipId,
              outcome: failedOnly ? 'no alert, clip-failed' : 'no alert',
            });
            continue;
          }
          const answer = () =>
            seen.find(
              (s) => s.clipId === alert.clipId && (s.kind === 'clip-failed' || s.kind === 'manifest'),
            );
          await until(() => answer() !== undefined, 15_000, 'the answer').catch(() => undefined);
          const found = answer();
          rounds.push({
            planned,
            sentToKill: Math.round((killedAt - sentAt) * 10) / 10,
            offset: Math.round((killedAt - alert.at) * 10) / 10,
            clipId: alert.clipId,
            outcome: found ? (found.kind === 'manifest' ? 'clip' : 'clip-failed') : 'nothing',
          });
        }
      }

      const table = [
        `kill-timing (press → kill, measured; lead ${lead.toFixed(1)} ms from the calibration presses):`,
        '| planned ms | press → kill ms | request sent → kill ms | outcome |',
        '| --- | --- | --- | --- |',
        ...rounds.map(
          (r) =>
            `| ${r.planned} | ${r.offset === undefined ? '—' : r.offset} | ${r.sentToKill} | ${r.outcome} |`,
        ),
      ].join('\n');
      process.stdout.write(`${table}\n`);
      expect(
        rounds.filter((r) => r.outcome === 'nothing'),
        table,
      ).toEqual([]);
      // The kills landed where planned, give or take: most rounds raised their alert before the kill.
      expect(rounds.filter((r) => !r.outcome.startsWith('no alert')).length, table).toBeGreaterThan(0);
    },
    120_000 + REPEATS * OFFSETS_MS.length * 30_000,
  );
});
