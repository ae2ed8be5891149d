// Helpers for tests that run real processes: the built `outpost` CLI, free loopback ports, and waiting
// for a line of output with a bound instead of sleeping.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../bench/proc.js';

export { freePort };

const above = fileURLToPath(new URL('../..', import.meta.url));
/** The repository, whether this runs from its sources (vitest) or compiled under dist/ (benchmarks). */
export const REPO = /[/\\]dist[/\\]$/.test(above) ? join(above, '..', '/') : above;
export const CLI = join(REPO, 'dist/daemon/src/cli.js');

export function requireBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
}

/** A UDP port that was free on 127.0.0.1 a moment ago. */
export async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(resolve));
  return port;
}

/** An even UDP port that was free on 127.0.0.1 with the one above it (RTP and its RTCP). */
export async function freeUdpPortPair(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const rtp = createSocket('udp4');
    const rtcp = createSocket('udp4');
    try {
      await new Promise<void>((resolve, reject) => {
        rtp.once('error', reject);
        rtp.bind(0, '127.0.0.1', resolve);
      });
      const port = rtp.address().port;
      await new Promise<void>((resolve, reject) => {
        rtcp.once('error', reject);
        rtcp.bind(port + 1, '127.0.0.1', resolve);
      });
      return port;
    } catch {
      // taken: try another pair
    } finally {
      rtp.close();
      rtcp.close();
    }
  }
  throw new Error('no free UDP port pair on 127.0.0.1 in 20 tries');
}

export async function tempDir(prefix = 'outpost-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function writeTemp(name: string, text: string): Promise<string> {
  const file = join(await tempDir(), name);
  await writeFile(file, text);
  return file;
}

export interface Run {
  child: ChildProcessWithoutNullStreams;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first stdout JSON log line matching, or rejects after `ms`. */
  waitForLog(
    match: (line: Record<string, unknown>) => boolean,
    ms?: number,
  ): Promise<Record<string, unknown>>;
  exited(ms?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Run the built CLI with arguments; stdout is not a TTY, so logs are JSON lines. */
/**
 * The CLI runs of one test file: `start` runs one and keeps it; `stopAll` (in afterEach) kills what is
 * still running and waits for every one to exit.
 */
export function cliRuns(): { start: (args: string[]) => Run; stopAll: () => Promise<void> } {
  const runs: Run[] = [];
  return {
    start(args) {
      const run = runCli(args);
      runs.push(run);
      return run;
    },
    async stopAll() {
      for (const run of runs.splice(0)) {
        if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
        await run.exited();
      }
    },
  };
}

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, wrapper: string[] = []): Run {
  requireBuilt();
  // `wrapper`: a command that runs node for us, e.g. ['ip', 'netns', 'exec', NAME] (it execs, same pid).
  const [command = process.execPath, ...before] = [
    ...wrapper,
    ...(wrapper.length > 0 ? [process.execPath] : []),
  ];
  const child = spawn(command, [...before, CLI, ...args], { env: { ...process.env, ...env }, cwd: REPO });
  let out = '';
  let err = '';
  const waiters: Array<{
    match: (line: Record<string, unknown>) => boolean;
    resolve: (v: Record<string, unknown>) => void;
  }> = [];
  const seen: Record<string, unknown>[] = [];
  let partial = '';
  child.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    partial += chunk.toString();
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const text of lines) {
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        continue;
      }
      seen.push(line);
      for (const waiter of [...waiters]) {
        if (waiter.match(line)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(line);
        }
      }
    }
  });
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    waitForLog(match, ms = 20_000) {
      const found = seen.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no matching log line within ${ms} ms; stdout:\n${out}\nstderr:\n${err}`)),
          ms,
        );
        waiters.push({
          match,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
      });
    },
    exited(ms = 20_000) {
      return Promise.race([
        exit,
        new Promise<never>((_, reject) =>
          setTimeout(
            () => reject(new Error(`process did not exit within ${ms} ms; stdout:\n${out}\nstderr:\n${err}`)),
            ms,
          ).unref(),
        ),
      ]);
    },
  };
}

/** Run the CLI to completion. */
export async function runCliToEnd(args: string[], env: NodeJS.ProcessEnv = {}) {
  const run = runCli(args, env);
  const { code } = await run.exited();
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}

/** A config for a daemon that binds only free loopback ports. */
export async function daemonConfig(
  extra = '',
): Promise<{ file: string; brokerPort: number; rtpPort: number; dataDir: string }> {
  const brokerPort = await freePort();
  const rtpPort = await freePort();
  const dataDir = await tempDir('outpost-data-');
  const file = await writeTemp(
    'outpost.yaml',
    `site: test\ndevice: box1\ndataDir: ${dataDir}\nbroker:\n  tcp:\n    port: ${brokerPort}\ncameras:\n  - name: cam0\n    width: 320\n    height: 240\n    rtp:\n      port: ${rtpPort}\n${extra}`,
  );
  return { file, brokerPort, rtpPort, dataDir };
}

/** Poll `check` every 50 ms until it holds; reject after `ms`, naming what was awaited. */
export async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
