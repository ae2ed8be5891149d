// Child processes that die with the daemon and inherit none of its files. Every process the daemon
// starts (a camera's GStreamer worker, a clip's mux, the encoder probe, gpiomon/gpioset) is started as
//
//   setpriv --pdeathsig SIGKILL -- bash -c CLOSE_AND_CHECK outpost-child DAEMON_PID FD… -- PROGRAM ARGS…
//
// - `setpriv --pdeathsig` (util-linux, in every Debian) sets prctl(PR_SET_PDEATHSIG): the kernel sends
//   the child SIGKILL when the daemon dies, however it dies (kill -9, the OOM killer, the watchdog's
//   abort), even when the child is stuck in native code and would never see its IPC channel close (a
//   GStreamer worker whose exit hangs was seen left running, holding the daemon's files). The setting
//   survives the exec of PROGRAM. Under systemd, KillMode=control-group kills the whole group as well;
//   this covers a daemon run by hand, by a test, or in a container.
// - The bash step closes the descriptors the daemon holds without close-on-exec (LevelDB 1.20, under
//   classic-level, opens its LOCK, LOG, journal and MANIFEST without O_CLOEXEC), so no child holds the
//   daemon's stores, and checks that its parent is still the daemon: a daemon that died before prctl
//   took effect left the child orphaned already, and then it exits at once (status 70). The list is
//   read from /proc/self/fdinfo just before the spawn: a file LevelDB opens in its own thread between
//   that read and the fork is still inherited (it closes with the child).
//
// This module only builds the command line; gst/fork.ts and gpio/gpiod-pin.ts start it.
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs';

const SETPRIV = '/usr/bin/setpriv';
const BASH = '/bin/bash';

/** The bash step: $1 the daemon's pid, then descriptors to close up to `--`, then the program. */
const CLOSE_AND_CHECK = [
  'parent=$1; shift',
  'while [ "$1" != -- ]; do eval "exec $1>&-"; shift; done; shift',
  '[ "$PPID" = "$parent" ] || exit 70',
  'exec "$@"',
].join('\n');

/** O_CLOEXEC as /proc/PID/fdinfo prints `flags:` (octal). */
const O_CLOEXEC = 0o2000000;

let usable: boolean | undefined;

/** Why children cannot be tied to the daemon here (setpriv or bash missing), or undefined. */
export function childTieProblem(): string | undefined {
  usable ??= [SETPRIV, BASH].every((file) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  return usable
    ? undefined
    : `${SETPRIV} or ${BASH} is missing (apt-get install util-linux bash): child processes can outlive a killed daemon and inherit its files`;
}

/**
 * The daemon's descriptors above `keep` that a child would inherit (no close-on-exec). `keep` is the
 * highest descriptor the spawn itself sets up in the child (2 for stdio, 3 with an IPC channel).
 */
export function inheritableDescriptors(keep: number): number[] {
  const found: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc/self/fdinfo');
  } catch {
    return found; // no /proc: nothing to find, nothing to close
  }
  for (const entry of entries) {
    const fd = Number(entry);
    if (!Number.isInteger(fd) || fd <= keep) continue;
    try {
      const flags = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${entry}`, 'utf8'))?.[1];
      if (flags !== undefined && (Number.parseInt(flags, 8) & O_CLOEXEC) === 0) found.push(fd);
    } catch {
      // closed meanwhile (the directory's own descriptor, or a file closed by another thread)
    }
  }
  return found.sort((a, b) => a - b);
}

/**
 * `program args…` as a command that dies with this process and inherits none of its descriptors
 * above `keep`. Unchanged (untied) when setpriv or bash is missing: see childTieProblem().
 */
export function tiedToParent(
  program: string,
  args: readonly string[],
  keep = 2,
): { file: string; args: string[] } {
  if (childTieProblem() !== undefined) return { file: program, args: [...args] };
  return {
    file: SETPRIV,
    args: [
      '--pdeathsig',
      'SIGKILL',
      '--',
      BASH,
      '-c',
      CLOSE_AND_CHECK,
      'outpost-child',
      String(process.pid),
      ...inheritableDescriptors(keep).map(String),
      '--',
      program,
      ...args,
    ],
  };
}
