// What the benchmarks read about processes: a free loopback port, a process tree, CPU ticks from
// /proc (utime + stime, USER_HZ = 100 on Linux), and the daemon's environment under systemd. Shared so
// each bench does not keep its own copy.
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (!address || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** Every pid in the tree under `root`, root included. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // exited while we looked
    }
  }
  const all = [root];
  for (let i = 0; i < all.length; i++) all.push(...(children.get(all[i]!) ?? []));
  return all;
}

/** CPU ticks (user + system) a process has used; 0 once it has exited. */
export function cpuTicks(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

/** `Environment=` of systemd/outpost.service, so the bench runs the daemon as the box does. */
export function unitEnvironment(): Record<string, string> {
  const unit = readFileSync(fileURLToPath(new URL('../../systemd/outpost.service', import.meta.url)), 'utf8');
  const pairs = unit
    .split('\n')
    .filter((line) => line.startsWith('Environment='))
    // Space-separated assignments, each whole assignment optionally in double quotes (systemd.exec).
    .flatMap((line) =>
      [...line.slice('Environment='.length).matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? ''),
    );
  return Object.fromEntries(
    pairs.map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]),
  );
}

/** The Node flags of systemd/outpost.service's ExecStart (those before the script), for the same reason. */
export function unitNodeFlags(): string[] {
  const unit = readFileSync(fileURLToPath(new URL('../../systemd/outpost.service', import.meta.url)), 'utf8');
  const words = /^ExecStart=(.*)$/m.exec(unit)?.[1]?.trim().split(/\s+/) ?? [];
  return words.slice(1).filter((word, i, all) => all.slice(0, i + 1).every((w) => w.startsWith('--')));
}

/**
 * A process's memory from /proc/PID/smaps_rollup, in kB: Rss (every resident page it maps, shared ones
 * included), Pss (each shared page divided by the number of processes mapping it, machine-wide) and
 * Private (Private_Clean + Private_Dirty: pages only this process maps). undefined once it has exited.
 */
export function memoryKb(pid: number): { rss: number; pss: number; private: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  } catch {
    return undefined;
  }
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  return {
    rss: field('Rss'),
    pss: field('Pss'),
    private: field('Private_Clean') + field('Private_Dirty'),
  };
}

/**
 * Memory of a set of processes with each shared page counted once *within the set*, in kB: the sum of
 * their private pages plus, per mapped file, the most any one of them has resident of its shared
 * pages (an estimate: two processes may touch different pages of one library). This is what the set
 * costs a box where nothing else maps the same files; PSS also splits shared pages with unrelated
 * processes (another node on a build machine), so there it reads lower.
 */
export function sharedOnceKb(pids: number[]): number {
  let privateKb = 0;
  const sharedByFile = new Map<string, number>();
  for (const pid of pids) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/smaps`, 'utf8');
    } catch {
      continue;
    }
    const perFile = new Map<string, number>();
    let file = '';
    for (const line of text.split('\n')) {
      const mapping = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
      if (mapping) {
        file = mapping[1]!;
        continue;
      }
      const size = /^(Private_Clean|Private_Dirty|Shared_Clean|Shared_Dirty):\s+(\d+) kB/.exec(line);
      if (!size) continue;
      if (size[1]!.startsWith('Private')) privateKb += Number(size[2]);
      else perFile.set(file, (perFile.get(file) ?? 0) + Number(size[2]));
    }
    for (const [name, kb] of perFile) sharedByFile.set(name, Math.max(sharedByFile.get(name) ?? 0, kb));
  }
  return privateKb + [...sharedByFile.values()].reduce((sum, kb) => sum + kb, 0);
}
