// A child process never outlives the daemon nor holds its files: the built daemon with two test cameras
// streaming is killed with -9 twenty times (started again each time on the same data dir); after each
// kill, every process it had started (camera workers and what they run) is gone within a few seconds,
// and no process has any file of its data dir open (LevelDB's LOCK among them). While it runs, its
// camera workers hold none of the daemon's own files either.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { cliRuns, freePort, freeUdpPortPair, tempDir, until, writeTemp } from '../support/processes.js';

const { start, stopAll } = cliRuns();

afterEach(async () => {
  await stopAll();
});

/** Every live (not zombie) process and its parent, from /proc. */
function processes(): Map<number, { ppid: number; state: string }> {
  const found = new Map<number, { ppid: number; state: string }>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so split after the last ')'.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state !== 'Z' && state !== 'X')
        found.set(Number(entry), { ppid: Number(ppid), state: state ?? '' });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** `pid`'s children, their children, and so on. */
function descendants(pid: number): number[] {
  const all = processes();
  const found: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const parent = queue.shift();
    for (const [child, { ppid }] of all)
      if (ppid === parent) {
        found.push(child);
        queue.push(child);
      }
  }
  return found;
}

/** Processes (of `among`, or all) holding a file under `dir` open, with the file. */
function holders(dir: string, among?: readonly number[]): string[] {
  const found: string[] = [];
  const pids = among ?? [...processes().keys()];
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
        if (target.startsWith(`${dir}/`)) found.push(`${pid}: ${target}`);
      } catch {
        // closed meanwhile
      }
    }
  }
  return found;
}

function alive(pid: number): boolean {
  return processes().has(pid);
}

const KILLS = 20;

describe('child processes and a killed daemon', () => {
  it(`kill -9 of the daemon ${KILLS} times with cameras streaming leaves no worker and no open file of its data dir`, async () => {
    // Two light test cameras (320×240 at 15 fps, x264enc: no encoder probe at each start).
    const camera = (name: string, port: number) =>
      `  - name: ${name}\n    width: 320\n    height: 240\n    framerate: 15\n    encoder: x264enc\n    rtp:\n      port: ${port}\n`;
    const dataDir = await tempDir('outpost-data-');
    const file = await writeTemp(
      'outpost.yaml',
      `site: test\ndevice: box1\ndataDir: ${dataDir}\nbroker:\n  tcp:\n    port: ${await freePort()}\ncameras:\n${camera('cam0', await freeUdpPortPair())}${camera('cam1', await freeUdpPortPair())}`,
    );

    const survivors: string[] = [];
    const leftOpen: string[] = [];
    let inheritedWhileRunning: string[] = [];
    for (let round = 1; round <= KILLS; round += 1) {
      const daemon = start(['run', '--config', file]);
      const pid = daemon.child.pid ?? 0;
      for (const camera of ['cam0', 'cam1'])
        await daemon.waitForLog(
          (line) => line.msg === 'camera state' && line.state === 'streaming' && line.camera === camera,
          30_000,
        );
      const children = descendants(pid);
      expect(children.length, `round ${round}: the daemon's children`).toBeGreaterThanOrEqual(2);
      if (round === 1) inheritedWhileRunning = holders(dataDir, children);
      daemon.child.kill('SIGKILL');
      await daemon.exited();
      // The kernel kills tied children at once; a worker that exits by itself takes longer. Bounded.
      await until(() => children.every((child) => !alive(child)), 5000, 'the children to go').catch(
        () => undefined,
      );
      leftOpen.push(...holders(dataDir).map((holder) => `round ${round}: ${holder}`));
      for (const child of children.filter(alive)) {
        let command = '';
        try {
          command = readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0').join(' ');
        } catch {
          // gone meanwhile
        }
        survivors.push(`round ${round}: ${child} ${command}`);
        process.kill(child, 'SIGKILL'); // the next round starts clean either way
      }
    }
    expect({ survivors, leftOpen, inheritedWhileRunning }).toEqual({
      survivors: [],
      leftOpen: [],
      inheritedWhileRunning: [],
    });
  }, 600_000);
});
