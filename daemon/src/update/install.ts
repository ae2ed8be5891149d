// Installing a bundle on this box (root: `outpost update install`, run by the install, USB and CLI
// paths): one install at a time (a lock file); the bundle checked in full first (check.ts), so a
// refused bundle writes nothing but the updater's own state; then RAUC writes the idle slot (marking
// it bad first, so a power cut mid-write leaves it out of the boot order), runs the bundle's hook
// (kernel onto the boot partition, the box's own files), and makes it the slot the next boot tries;
// the state says `rebooting` and the box reboots into it on trial. The health gate (gate.ts) takes
// it from there.
import { existsSync } from 'node:fs';
import { chown, mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { describeError, OutpostError } from '../errors.js';
import { checkBundle, type BundleInfo } from './check.js';
import { bootedSlot, otherSlot, readRelease, type Release, type Slot } from './release.js';
import { run } from './run.js';
import { readState, writeState, type UpdatePaths, type UpdateState } from './state.js';

/** The updater's journal: one line per event (a pino logger fits). */
export interface UpdateLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

export interface InstallDeps {
  paths: UpdatePaths;
  log: UpdateLog;
  /** The rauc program (tests run RAUC's service on a session bus). */
  rauc?: string;
  /** Reboot into the slot on trial; default: the boot backend's trial-reboot. */
  reboot?: () => Promise<void>;
  now?: () => number;
}

export interface InstallOptions {
  allowOlder?: boolean;
  /** Leave the box running; the next reboot tries the new slot. */
  noReboot?: boolean;
  /** Where the bundle came from, for the journal: lan, usb, cli. */
  via?: string;
}

export interface Installed {
  info: BundleInfo;
  slot: Slot;
}

const lockFile = (paths: UpdatePaths): string => join(paths.updateDir, 'lock');

/** Take the updater's lock (O_EXCL; a lock left by a process that is gone is taken over). */
export async function takeLock(paths: UpdatePaths): Promise<() => Promise<void>> {
  await mkdir(paths.updateDir, { recursive: true });
  const file = lockFile(paths);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(file, 'wx', 0o644);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return () => rm(file, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
      const alive = pid > 0 && existsSync(`/proc/${pid}`);
      if (alive) {
        throw new OutpostError('UPDATE_BUSY', `another install is running (process ${pid})`, {
          hint: 'wait for it to finish: journalctl -t outpost-update',
        });
      }
      await rm(file, { force: true });
    }
  }
  throw new OutpostError('UPDATE_BUSY', `cannot take the update lock ${file}`, {
    hint: 'remove it if no install is running',
  });
}

export async function backend(paths: UpdatePaths, args: readonly string[], timeoutMs = 60_000) {
  return run(paths.bootBackend, args, { timeoutMs });
}

/** Why this box cannot boot a slot on trial, or undefined when it can. */
async function cannotTrial(paths: UpdatePaths): Promise<string | undefined> {
  const result = await backend(paths, ['can-trial']);
  return result.status === 0 ? undefined : result.stderr.trim() || 'the boot backend said no';
}

function raucMessage(output: string): string {
  const lines = output
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  const last = lines.filter((line) => /LastError|error|failed/i.test(line)).at(-1) ?? lines.at(-1) ?? '';
  return last.replace(/^LastError:\s*/, '');
}

/** Install one bundle. Throws a coded OutpostError (refusal, busy, install failure). */
export async function installBundle(
  file: string,
  options: InstallOptions,
  deps: InstallDeps,
): Promise<Installed> {
  const { paths, log } = deps;
  const now = deps.now ?? Date.now;
  const release = await readRelease(paths.releaseFile);
  const booted = await bootedSlot(paths.cmdline);
  const from = { version: release.version, slot: booted };
  // One write at a time, in order: progress lines arrive while RAUC runs.
  let writing: Promise<void> = Promise.resolve();
  const note = (state: Omit<UpdateState, 'since' | 'from'>): Promise<void> => {
    writing = writing.catch(() => undefined).then(() => writeState(paths, { since: now(), from, ...state }));
    return writing;
  };
  const unlock = await takeLock(paths);
  let target: Slot | undefined;
  let info: BundleInfo | undefined;
  try {
    if (!booted) {
      throw new OutpostError(
        'UPDATE_UNSUPPORTED',
        'the kernel command line names no root slot (rauc.slot=)',
        {
          hint: 'updates need the A/B image (image-build/build.sh); this root was booted some other way',
        },
      );
    }
    const previous = await readState(paths);
    if (previous?.phase === 'trial' && previous.target?.slot === booted) {
      throw new OutpostError(
        'UPDATE_BUSY',
        `slot ${booted} (${release.version}) is on trial: it is committed or rolled back within minutes`,
        { hint: 'install again once `outpost update status` says committed or rolled-back' },
      );
    }
    const why = await cannotTrial(paths);
    if (why)
      throw new OutpostError('UPDATE_UNSUPPORTED', why, { hint: 'see docs/updates.md, "Boot methods"' });
    info = await checkBundle(file, {
      keyring: paths.keyring,
      release,
      allowOlder: options.allowOlder,
      rauc: deps.rauc,
    });
    target = otherSlot(booted);
    log.info(
      { event: 'update-installing', bundle: file, version: info.version, slot: target, via: options.via },
      `installing ${info.version} into slot ${target}`,
    );
    await note({
      phase: 'installing',
      target: { version: info.version, slot: target },
      progress: 0,
      reason: null,
      code: null,
    });
    // The bundle's install-check hook refuses older versions on its own; this lets this one through.
    await mkdir(dirname(paths.allowFile), { recursive: true });
    if (options.allowOlder) await writeFile(paths.allowFile, info.version);
    else await rm(paths.allowFile, { force: true });
    let reported = 0;
    const installed = { version: info.version, slot: target };
    const result = await run(deps.rauc ?? 'rauc', ['install', file], {
      timeoutMs: 60 * 60_000,
      onLine: (line) => {
        const progress = /^\s*(\d{1,3})%\s/.exec(line);
        if (!progress) return;
        const percent = Math.min(100, Number(progress[1]));
        // The state is on the card: a write per 10% at most.
        if (percent - reported >= 10) {
          reported = percent;
          void note({ phase: 'installing', target: installed, progress: percent, reason: null, code: null });
        }
      },
    });
    await rm(paths.allowFile, { force: true });
    if (result.status !== 0) {
      const said = raucMessage(`${result.stdout}\n${result.stderr}`);
      // The install-check hook's refusals (version, compatible) arrive through RAUC.
      if (/Hook returned: .*older than|Hook returned: .*version running now/.test(said)) {
        throw new OutpostError('UPDATE_OLDER', said.replace(/^.*Hook returned: /, ''), {
          hint: 'to install it anyway, add --allow-older',
        });
      }
      if (/Hook returned: bundle is for/.test(said)) {
        throw new OutpostError('UPDATE_INCOMPATIBLE', said.replace(/^.*Hook returned: /, ''), {
          hint: 'use the bundle made for this box',
        });
      }
      throw new OutpostError('UPDATE_INSTALL_FAILED', `RAUC could not install ${file}: ${said}`, {
        hint: `the running slot ${booted} is unchanged; slot ${target} is left out of the boot order. Check the journal (journalctl -u rauc) and the data partition's free space, then install again`,
      });
    }
    await note({ phase: 'rebooting', target: installed, progress: 100, reason: null, code: null });
    log.info(
      { event: 'update-installed', version: info.version, slot: target, reboot: !options.noReboot },
      `installed ${info.version} into slot ${target}; ${options.noReboot ? 'the next reboot tries it' : 'rebooting into it on trial'}`,
    );
  } catch (error) {
    const coded = error instanceof OutpostError ? error : undefined;
    const refused = coded !== undefined && coded.code !== 'UPDATE_INSTALL_FAILED';
    const busy = coded?.code === 'UPDATE_BUSY';
    log.error(
      {
        event: refused ? 'update-refused' : 'update-failed',
        code: coded?.code ?? 'INTERNAL',
        bundle: file,
        reason: describeError(error),
      },
      refused ? 'update refused: nothing was written' : 'update failed',
    );
    // A second install refused as busy must not overwrite the state of the one that is running.
    if (!busy) {
      await note({
        phase: refused ? 'refused' : 'failed',
        target: info ? { version: info.version, slot: target ?? null } : null,
        progress: null,
        reason: describeError(error),
        code: coded?.code ?? 'INTERNAL',
      }).catch(() => undefined);
    }
    throw error;
  } finally {
    await unlock();
  }
  if (!options.noReboot)
    await (deps.reboot ?? (() => backend(paths, ['trial-reboot']).then(() => undefined)))();
  return { info, slot: target };
}

/**
 * `install --queued`: the bundles the daemon received (RECEIVE/ready/*.raucb, each with a .json of
 * its options) are moved into root's UPDATE/install/ (one filesystem: a rename), owned by root, and
 * installed one after another; each is deleted once installed or refused. Returns the last error.
 */
export async function installQueued(deps: InstallDeps): Promise<Error | undefined> {
  const { paths, log } = deps;
  const ready = join(paths.receiveDir, 'ready');
  const mine = join(paths.updateDir, 'install');
  await mkdir(mine, { recursive: true, mode: 0o700 });
  const names = (await readdir(ready).catch(() => [] as string[])).filter((name) => name.endsWith('.raucb'));
  let failure: Error | undefined;
  for (const name of names.sort()) {
    const bundle = join(mine, name);
    const sidecar = join(ready, `${name}.json`);
    const options = JSON.parse(await readFile(sidecar, 'utf8').catch(() => '{}')) as { allowOlder?: boolean };
    await rename(join(ready, name), bundle);
    await rm(sidecar, { force: true });
    await chown(bundle, 0, 0).catch(() => undefined);
    try {
      // The reboot waits until the bundle is gone from the data partition.
      await installBundle(
        bundle,
        { allowOlder: options.allowOlder === true, via: 'lan', noReboot: true },
        deps,
      );
      await rm(bundle, { force: true });
      await (deps.reboot ?? (() => backend(paths, ['trial-reboot']).then(() => undefined)))();
      return undefined;
    } catch (error) {
      failure = error instanceof Error ? error : new Error(String(error));
      await rm(bundle, { force: true });
      log.warn({ event: 'update-bundle-deleted', bundle: basename(bundle) }, 'refused bundle deleted');
    }
  }
  return failure;
}

export type { Release };
