// The GPIO character-device backend, through Debian's `gpiod` tools (libgpiod 1.6 on Debian 12):
// `gpiomon` watches an input line and prints one line per edge, `gpioset --mode=signal` holds an output
// level until it is signalled, `gpiodetect` lists the chips with their labels. libgpiod 1.6 opens a
// chip by its label, so the tools are given `pinctrl-bcm2711` / `pinctrl-rp1` and a line offset.
//
// Why the tools and not the node-libgpiod binding: they are a Debian package (no native build on the
// box or in the image, nothing from npm to trust), they run in their own process (a crash or a hang
// cannot take the daemon with it), and they work the same on libgpiod 1.6 and the Pi's kernels. The
// cost is a process per line and a respawn per LED change, which is nothing at button and LED rates.
//
// A requested line is exclusive: while `gpiomon` holds the button line no other process can read it,
// so the level is followed from the edges gpiomon reports, after one `gpioget` at open.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { OutpostError } from '../errors.js';
import { tiedToParent } from '../lifecycle/tied-child.js';
import { stopChild } from '../lifecycle/stop-child.js';
import type { ChardevChip, GpioRoots, ResolvedLine } from './chips.js';
import type { Pin, PinRequest, PinValue, WatchCallback } from './pin.js';

type ChardevLine = Extract<ResolvedLine, { backend: 'chardev' }>;

/** `gpiodetect` lists `gpiochip0 [pinctrl-bcm2711] (58 lines)` per chip. */
export function parseGpiodetect(output: string): ChardevChip[] {
  const chips: ChardevChip[] = [];
  for (const line of output.split('\n')) {
    const match = /^(gpiochip\d+) \[(.*)\] \((\d+) lines\)/.exec(line.trim());
    if (match?.[1] && match[2] !== undefined && match[3]) {
      chips.push({ name: match[1], label: match[2], lines: Number(match[3]) });
    }
  }
  return chips;
}

/** The chips gpiodetect sees (it always looks in /dev: the roots only matter to fake trees). */
export async function listChardevChips(_roots: GpioRoots): Promise<ChardevChip[]> {
  const { code, stdout, stderr } = await runTool('gpiodetect', []);
  if (code !== 0) {
    throw new OutpostError('GPIO_UNAVAILABLE', `gpiodetect failed: ${stderr.trim() || `exit ${code}`}`, {
      hint: 'add the outpost user to the gpio group (usermod -aG gpio outpost) and restart',
    });
  }
  return parseGpiodetect(stdout);
}

/** The gpiomon arguments that report every edge of `line` as `0` (falling) or `1` (rising). */
export function gpiomonArgs(line: ChardevLine, request: PinRequest): string[] {
  const edges = request.edge === 'rising' ? ['-r'] : request.edge === 'falling' ? ['-f'] : [];
  return ['-b', '-B', request.bias ?? 'as-is', ...edges, '-F', '%e', line.chipLabel, String(line.offset)];
}

export async function openGpiodPin(line: ChardevLine, request: PinRequest): Promise<Pin> {
  const description = `GPIO${line.bcm} (${line.chipLabel} line ${line.offset}, ${line.chipPath})`;
  const failed = (what: string, detail: string) =>
    new OutpostError('GPIO_UNAVAILABLE', `${what} ${description}: ${detail}`, {
      hint: /permission/i.test(detail)
        ? 'add the outpost user to the gpio group (usermod -aG gpio outpost) and restart'
        : /busy/i.test(detail)
          ? 'another program holds this line; check gpio.button.pin / gpio.led.pin'
          : 'is the gpiod package installed (apt-get install gpiod)?',
    });
  if (request.direction === 'out') return outputPin(line, description, failed);

  const initial = await runTool('gpioget', [
    '-B',
    request.bias ?? 'as-is',
    line.chipLabel,
    String(line.offset),
  ]);
  if (initial.code !== 0)
    throw failed('cannot read', initial.stderr.trim() || `gpioget exit ${initial.code}`);
  let level: PinValue = initial.stdout.trim() === '1' ? 1 : 0;
  const watchers = new Set<WatchCallback>();
  const monitor = spawnTied('gpiomon', gpiomonArgs(line, request), ['ignore', 'pipe', 'pipe']);
  let stderr = '';
  let partial = '';
  let closing = false;
  monitor.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  monitor.stdout?.on('data', (chunk: Buffer) => {
    partial += chunk.toString();
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const text of lines) {
      level = text.trim() === '1' ? 1 : 0;
      for (const watcher of [...watchers]) watcher(null, level);
    }
  });
  monitor.on('error', (error) => {
    for (const watcher of [...watchers]) watcher(failed('cannot watch', error.message), level);
  });
  monitor.on('exit', (code, signal) => {
    if (closing) return;
    const error = failed('stopped watching', stderr.trim() || `gpiomon exited (${code ?? signal})`);
    for (const watcher of [...watchers]) watcher(error, level);
  });
  return {
    description,
    read: () => Promise.resolve(level),
    write: () => Promise.reject(failed('cannot write', 'the line is an input')),
    watch: (callback) => watchers.add(callback),
    unwatchAll: () => watchers.clear(),
    async close() {
      if (closing) return;
      closing = true;
      watchers.clear();
      await stopChild(monitor, { graceMs: 1000 });
    },
  };
}

function outputPin(
  line: ChardevLine,
  description: string,
  failed: (what: string, detail: string) => OutpostError,
): Pin {
  let holder: ChildProcess | undefined;
  let level: PinValue = 0;
  let closed = false;
  return {
    description,
    read: () => Promise.resolve(level),
    async write(value: PinValue) {
      if (closed) return;
      const previous = holder;
      holder = undefined;
      if (previous) await stopChild(previous, { graceMs: 1000 });
      level = value;
      const child = spawnTied(
        'gpioset',
        ['--mode=signal', line.chipLabel, `${line.offset}=${value}`],
        ['ignore', 'ignore', 'pipe'],
      );
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      holder = child;
      // gpioset prints nothing on success and exits at once on failure: a quick exit is the error.
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, 50);
        child.once('error', (error) => {
          clearTimeout(timer);
          reject(failed('cannot drive', error.message));
        });
        child.once('exit', (code) => {
          clearTimeout(timer);
          if (holder === child) holder = undefined;
          reject(failed('cannot drive', stderr.trim() || `gpioset exit ${code}`));
        });
      });
    },
    watch() {
      throw failed('cannot watch', 'the line is an output');
    },
    unwatchAll() {},
    async close() {
      closed = true;
      const previous = holder;
      holder = undefined;
      if (previous) await stopChild(previous, { graceMs: 1000 });
    },
  };
}

/** A gpiod tool that dies with the daemon and inherits none of its files (lifecycle/tied-child.ts). */
function spawnTied(command: string, args: string[], stdio: StdioOptions): ChildProcess {
  const tied = tiedToParent(command, args);
  return spawn(tied.file, tied.args, { stdio });
}

function runTool(command: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawnTied(command, args, ['ignore', 'pipe', 'pipe']);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', (error) => resolve({ code: 127, stdout, stderr: `${command}: ${error.message}` }));
    child.on('exit', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}
