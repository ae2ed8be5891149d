// First boot: apply the bundle a tech dropped on the boot partition (outpost-firstboot.service runs
// `outpost-provision firstboot` before outpost.service). All or nothing: the bundle is checked in full
// (openBundle) before anything is written; the new /etc/outpost is staged beside the old one, fsynced,
// and swapped in by rename; only then is the hostname set and the bundle wiped. A bad bundle changes
// nothing, stays on the card for inspection, and ends with a distinct exit status (FirstbootExit).
//
// First boot also owns what follows from the bundle outside /etc/outpost: the hostname, and chrony's
// role settings (chrony.ts: the hub serves time, a camera follows the hub). It sets the modes and
// owners of /etc/outpost itself (directories root:outpost 0750, files outpost:outpost 0640/0600) on
// every run, whatever the umask or the daemon unit's ConfigurationDirectoryMode.
//
// Trust (docs/provisioning.md, "Trust model"): once /etc/outpost/tls/ca.crt exists, a bundle must be
// signed by that CA. Before that, a CA fingerprint file (on the boot partition or baked into the image)
// pins the CA; without one, the bundle's own CA is trusted on first use.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmod,
  chown,
  mkdir,
  open,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  stat,
  unlink,
} from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { OutpostError, type ErrorCode } from '../../daemon/src/errors.js';
import type { Config } from '../../daemon/src/config/schema.js';
import { INSTALLED, openBundle, sameFiles, type BundleFile, type Trust } from './bundle.js';
import { CHRONY_ROLE_FILE, chronyRoleConfig } from './chrony.js';
import { fsyncDirectory, readIfExists, writeFileAtomic } from './files.js';

/** Exit statuses of `outpost-provision firstboot` (and of `bundle verify` for 10–13). */
export const FirstbootExit = {
  /** Applied, already applied (no-op), or no bundle on the card. */
  OK: 0,
  INTERNAL: 1,
  USAGE: 2,
  /** Not a bundle, truncated, unreadable. */
  MALFORMED: 10,
  /** The signature does not match the content: changed or damaged after it was made. */
  SIGNATURE: 11,
  /** Signed by a CA other than the installed one (or the pinned fingerprint). */
  UNTRUSTED: 12,
  /** Signed, but its config or identities would be refused by the daemon. */
  CONTENT: 13,
  /** Could not read or write /etc/outpost (permissions, disk full, read-only): the old state is intact. */
  INSTALL: 14,
  /** Installed, but the bundle could not be wiped from the boot partition. */
  WIPE: 15,
} as const;

const EXIT_BY_CODE: Partial<Record<ErrorCode, number>> = {
  USAGE_INVALID: FirstbootExit.USAGE,
  BUNDLE_MALFORMED: FirstbootExit.MALFORMED,
  BUNDLE_SIGNATURE_INVALID: FirstbootExit.SIGNATURE,
  BUNDLE_UNTRUSTED: FirstbootExit.UNTRUSTED,
  BUNDLE_CONTENT_INVALID: FirstbootExit.CONTENT,
  INSTALL_FAILED: FirstbootExit.INSTALL,
  BUNDLE_WIPE_FAILED: FirstbootExit.WIPE,
};

/** The exit status for an error: coded bundle problems 10–15, other coded (usage, site) problems 2. */
export function exitCodeFor(error: unknown): number {
  if (!(error instanceof OutpostError)) return FirstbootExit.INTERNAL;
  return EXIT_BY_CODE[error.code] ?? FirstbootExit.USAGE;
}

/** The events first boot reports (a pino logger fits). */
export interface FirstbootLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export interface FirstbootOptions {
  /** Root of the filesystem to provision: `/` on a box, a temp dir in tests. */
  root?: string;
  /** Bundle path (default: ROOT/boot/firmware/outpost-bundle.json). */
  bundle?: string;
  /** CA fingerprint files tried before trusting on first use. */
  fingerprintFiles?: readonly string[];
  /** Set the hostname: write ROOT/etc/hostname (+ /etc/hosts), and call hostnamectl when ROOT is `/`. */
  hostname?: boolean;
  log: FirstbootLog;
}

export type FirstbootOutcome = 'no-bundle' | 'applied' | 'unchanged';

export const DEFAULT_BUNDLE = '/boot/firmware/outpost-bundle.json';
export const DEFAULT_FINGERPRINT_FILES = [
  '/boot/firmware/outpost-ca.sha256',
  '/usr/lib/outpost/site-ca.sha256',
];

interface Owner {
  uid: number;
  gid: number;
}

/** The `outpost` user from ROOT/etc/passwd, when running as root and it exists. */
async function serviceOwner(root: string): Promise<Owner | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const passwd = await readIfExists(join(root, 'etc/passwd'));
  const line = passwd?.split('\n').find((entry) => entry.startsWith('outpost:'));
  const [, , uid, gid] = line?.split(':') ?? [];
  if (uid === undefined || gid === undefined) return undefined;
  return { uid: Number(uid), gid: Number(gid) };
}

/** Every regular file under `dir`, as installed paths (`/etc/outpost/...`). */
async function listInstalled(root: string, dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const found: string[] = [];
  for (const entry of entries) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await listInstalled(root, full)));
    else found.push(`/${relative(root, full)}`);
  }
  return found;
}

async function readInstalled(root: string): Promise<BundleFile[]> {
  const paths = await listInstalled(root, join(root, 'etc/outpost'));
  return Promise.all(
    paths.map(async (path) => {
      const full = join(root, path);
      return { path, mode: (await stat(full)).mode & 0o777, content: await readFile(full) };
    }),
  );
}

async function chooseTrust(
  root: string,
  fingerprintFiles: readonly string[],
  log: FirstbootLog,
): Promise<Trust> {
  const installedCa = await readIfExists(join(root, INSTALLED.ca));
  if (installedCa !== undefined) return { caPem: installedCa };
  for (const file of fingerprintFiles) {
    const text = await readIfExists(file);
    if (text !== undefined) {
      log.info({ event: 'trust', file }, 'bundle CA pinned by fingerprint file');
      return { fingerprint: text };
    }
  }
  return { firstUse: true };
}

/** /etc/outpost and its subdirectories: root:outpost, the daemon's group may enter and read. */
export const CONFIG_DIR_MODE = 0o750;

/** /etc/outpost and the directories that hold the bundle's files, deepest last. */
function configDirs(root: string, files: readonly BundleFile[]): string[] {
  const dirs = new Set([join(root, 'etc/outpost')]);
  for (const file of files) dirs.add(join(root, dirname(file.path)));
  return [...dirs].sort();
}

/**
 * Give the installed tree its intended modes and owners (directories root:outpost 0750, files
 * outpost:outpost with their bundle mode; owners only as root with an outpost user). Returns what it
 * had to change: nothing after a clean install, the drift when something (a hand edit, a unit's
 * ConfigurationDirectoryMode, a restore) changed them since.
 */
async function enforceModes(
  root: string,
  files: readonly BundleFile[],
  owner: Owner | undefined,
): Promise<string[]> {
  const changed: string[] = [];
  const enforce = async (path: string, mode: number, uid: number, gid: number): Promise<void> => {
    const info = await stat(path);
    if ((info.mode & 0o7777) !== mode) {
      await chmod(path, mode);
      changed.push(`/${relative(root, path)} mode ${(info.mode & 0o7777).toString(8)}`);
    }
    if (owner && (info.uid !== uid || info.gid !== gid)) {
      await chown(path, uid, gid);
      changed.push(`/${relative(root, path)} owner ${info.uid}:${info.gid}`);
    }
  };
  for (const dir of configDirs(root, files)) await enforce(dir, CONFIG_DIR_MODE, 0, owner?.gid ?? 0);
  for (const file of files) {
    await enforce(join(root, file.path), file.mode, owner?.uid ?? 0, owner?.gid ?? 0);
  }
  return changed;
}

/** Write chrony's role settings when chrony is installed (ROOT/etc/chrony/conf.d) and they differ. */
async function configureTime(root: string, config: Config, log: FirstbootLog): Promise<void> {
  const file = join(root, CHRONY_ROLE_FILE);
  const isDir = await stat(dirname(file)).then(
    (info) => info.isDirectory(),
    () => false,
  );
  if (!isDir) {
    log.warn({ event: 'time-skipped', file }, 'chrony is not installed: time settings not written');
    return;
  }
  const wanted = chronyRoleConfig(config);
  if ((await readIfExists(file)) === wanted) return;
  await writeFileAtomic(file, wanted, 0o644);
  const server = /^server (\S+)/m.exec(wanted)?.[1];
  log.info(
    { event: 'time', file, role: config.role, ...(server ? { server } : { serves: true }) },
    server ? `chrony follows the hub at ${server}` : 'chrony serves time to the site',
  );
}

/** Where the configuration folder really is: its parent folder and its name there. */
interface ConfigHome {
  parent: string;
  name: string;
}

/**
 * ROOT/etc/outpost, or where it links to: the A/B image links /etc/outpost to /data/etc/outpost on the
 * data partition that both root slots share (docs/updates.md, "Layout"). Staging, the swap and the
 * recovery happen beside the real folder, so the renames stay on one filesystem and the link stays.
 */
async function configHome(root: string): Promise<ConfigHome> {
  const target = await readlink(join(root, 'etc/outpost')).catch(() => undefined);
  if (target === undefined) return { parent: join(root, 'etc'), name: 'outpost' };
  const real = isAbsolute(target) ? join(root, target) : resolve(join(root, 'etc'), target);
  await mkdir(dirname(real), { recursive: true, mode: 0o755 });
  return { parent: dirname(real), name: basename(real) };
}

/** Write every file into a fresh staging directory beside /etc/outpost, fsynced, owned and moded. */
async function stage(
  home: ConfigHome,
  files: readonly BundleFile[],
  owner: Owner | undefined,
): Promise<string> {
  const staging = join(home.parent, `.${home.name}.new-${randomBytes(4).toString('hex')}`);
  const dirs = new Set([staging]);
  for (const file of files) dirs.add(join(staging, dirname(relative('/etc/outpost', file.path))));
  for (const dir of [...dirs].sort()) {
    await mkdir(dir, { recursive: true, mode: CONFIG_DIR_MODE });
    // mkdir's mode is cut by the umask (0077 would leave 0700, unreadable by the daemon): set it.
    await chmod(dir, CONFIG_DIR_MODE);
    if (owner) await chown(dir, 0, owner.gid);
  }
  for (const file of files) {
    const target = join(staging, relative('/etc/outpost', file.path));
    const handle = await open(target, 'wx', file.mode);
    try {
      await handle.chmod(file.mode);
      if (owner) await handle.chown(owner.uid, owner.gid);
      await handle.writeFile(file.content);
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
  for (const dir of [...dirs].sort().reverse()) await fsyncDirectory(dir);
  return staging;
}

/** Swap the staged directory in: old → .outpost.old-X, staged → outpost, then drop the old one. */
async function swapIn(home: ConfigHome, staging: string): Promise<void> {
  const target = join(home.parent, home.name);
  const old = join(home.parent, `.${home.name}.old-${randomBytes(4).toString('hex')}`);
  const hadOld = (await stat(target).catch(() => undefined)) !== undefined;
  if (hadOld) await rename(target, old);
  await rename(staging, target);
  await fsyncDirectory(home.parent);
  if (hadOld) await rm(old, { recursive: true, force: true });
}

/** A swap cut short by a power cut (old moved aside, new not yet in place): put the old one back. */
async function recoverInterruptedSwap(home: ConfigHome, log: FirstbootLog): Promise<void> {
  const { parent, name } = home;
  const entries = await readdir(parent).catch(() => [] as string[]);
  // A staging tree is never in force: drop it. At most one old tree exists (one install at a time).
  for (const entry of entries.filter((entry) => entry.startsWith(`.${name}.new-`))) {
    await rm(join(parent, entry), { recursive: true, force: true });
  }
  const old = entries.filter((entry) => entry.startsWith(`.${name}.old-`));
  const restore = entries.includes(name) ? undefined : old.shift();
  if (restore !== undefined) {
    await rename(join(parent, restore), join(parent, name));
    await fsyncDirectory(parent);
    log.warn({ event: 'recovered', from: restore }, 'restored /etc/outpost after an interrupted install');
  }
  for (const entry of old) await rm(join(parent, entry), { recursive: true, force: true });
}

async function setHostname(root: string, name: string, log: FirstbootLog): Promise<void> {
  await writeFileAtomic(join(root, 'etc/hostname'), `${name}\n`, 0o644);
  // Debian/Raspberry Pi OS map the hostname to 127.0.1.1; sudo and others complain when it is stale.
  const hostsFile = join(root, 'etc/hosts');
  const hosts = await readIfExists(hostsFile);
  if (hosts !== undefined) {
    const lines = hosts.split('\n').filter((line) => !/^127\.0\.1\.1\s/.test(line));
    if (lines.at(-1) === '') lines.pop();
    await writeFileAtomic(hostsFile, `${[...lines, `127.0.1.1\t${name}`].join('\n')}\n`, 0o644);
  }
  if (root === '/') {
    // Sets the running hostname now (through systemd-hostnamed); /etc/hostname covers the next boot.
    const result = spawnSync('hostnamectl', ['set-hostname', name], { encoding: 'utf8', timeout: 10_000 });
    if (result.status !== 0) {
      log.warn(
        { event: 'hostnamectl-failed', status: result.status, stderr: result.stderr?.trim() },
        'hostnamectl failed; the new hostname applies from the next boot',
      );
    }
  }
  log.info({ event: 'hostname', hostname: name }, 'hostname set');
}

/** Overwrite with zeros, fsync, unlink, fsync the directory: the secrets leave the card. */
export async function wipeFile(file: string): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    const { size } = await handle.stat();
    const zeros = Buffer.alloc(Math.min(size, 1 << 20));
    for (let offset = 0; offset < size; offset += zeros.length) {
      await handle.write(zeros, 0, Math.min(zeros.length, size - offset), offset);
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  await unlink(file);
  await fsyncDirectory(dirname(file));
}

/** The two ways a first boot's own step fails, with the hint for each. */
const STEP_FAILURES = {
  // Putting modes and owners back: the files are those of the bundle, their modes may not be.
  modes: {
    what: 'could not set the modes of the installed configuration',
    hint: 'first boot runs as root with CAP_CHOWN (outpost-firstboot.service); check /etc is writable',
  },
  // Reading what is installed (the CA, the files to compare): nothing was changed.
  read: {
    what: 'could not read the installed configuration',
    hint: 'first boot runs as root with CAP_DAC_READ_SEARCH (outpost-firstboot.service); nothing was changed',
  },
} as const;

/** Runs one step of an install; its error becomes INSTALL_FAILED, saying which step and the fix. */
async function installStep<T>(step: keyof typeof STEP_FAILURES, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    const { what, hint } = STEP_FAILURES[step];
    throw new OutpostError('INSTALL_FAILED', `${what}: ${(error as Error).message}`, { hint, cause: error });
  }
}

/** Apply the bundle, if there is one. Throws a coded OutpostError (see exitCodeFor) on a bad bundle. */
export async function firstboot(options: FirstbootOptions): Promise<FirstbootOutcome> {
  const root = options.root ?? '/';
  const { log } = options;
  const bundlePath = options.bundle ?? join(root, DEFAULT_BUNDLE);
  const fingerprintFiles = options.fingerprintFiles ?? DEFAULT_FINGERPRINT_FILES.map((f) => join(root, f));
  const home = await configHome(root);
  await recoverInterruptedSwap(home, log);

  let text: string | undefined;
  try {
    text = await readIfExists(bundlePath);
  } catch (error) {
    throw new OutpostError('BUNDLE_MALFORMED', `${bundlePath} cannot be read`, {
      hint: 'check the boot partition (fsck it on the laptop), then copy the bundle again',
      cause: error,
    });
  }
  if (text === undefined) {
    log.info({ event: 'no-bundle', bundle: bundlePath }, 'no bundle: nothing to do');
    return 'no-bundle';
  }
  const trust = await installStep('read', () => chooseTrust(root, fingerprintFiles, log));
  const bundle = openBundle(text, bundlePath, trust);
  const about = {
    site: bundle.envelope.site,
    device: bundle.envelope.device,
    role: bundle.envelope.role,
    caFingerprint: bundle.caFingerprint,
  };
  if ('firstUse' in trust) log.warn({ event: 'trust', ...about }, 'site CA trusted on first use');

  let outcome: FirstbootOutcome;
  const owner = await serviceOwner(root);
  if (sameFiles(bundle.files, await installStep('read', () => readInstalled(root)))) {
    outcome = 'unchanged';
    const repaired = await installStep('modes', () => enforceModes(root, bundle.files, owner));
    if (repaired.length > 0) {
      log.warn({ event: 'modes-repaired', ...about, repaired }, 'modes or owners of /etc/outpost put back');
    }
    log.info({ event: 'unchanged', ...about }, 'bundle already applied: nothing changed');
  } else {
    let staging: string | undefined;
    try {
      staging = await stage(home, bundle.files, owner);
      await swapIn(home, staging);
    } catch (error) {
      if (staging) await rm(staging, { recursive: true, force: true }).catch(() => undefined);
      throw new OutpostError(
        'INSTALL_FAILED',
        `could not install ${join(root, 'etc/outpost')}: ${(error as Error).message}`,
        {
          hint: 'the previous configuration is intact; check the root filesystem has space and is writable',
          cause: error,
        },
      );
    }
    // Staged with these modes already; this checks the tree in place (and is what `unchanged` runs).
    await installStep('modes', () => enforceModes(root, bundle.files, owner));
    log.info(
      { event: 'installed', ...about, files: bundle.files.length, owner: owner ? 'outpost' : 'unchanged' },
      'bundle installed',
    );
    outcome = 'applied';
  }
  try {
    await configureTime(root, bundle.config, log);
  } catch (error) {
    log.warn({ event: 'time-failed', error: (error as Error).message }, 'chrony settings not written');
  }
  if (outcome === 'applied') {
    if (options.hostname !== false) {
      try {
        await setHostname(root, bundle.envelope.device, log);
      } catch (error) {
        log.warn({ event: 'hostname-failed', error: (error as Error).message }, 'hostname not set');
      }
    }
  }
  try {
    await wipeFile(bundlePath);
  } catch (error) {
    throw new OutpostError(
      'BUNDLE_WIPE_FAILED',
      `installed, but ${bundlePath} could not be wiped: ${(error as Error).message}`,
      {
        hint: 'remove the bundle from the boot partition by hand: it holds the box’s secrets',
        cause: error,
      },
    );
  }
  log.info({ event: 'wiped', bundle: bundlePath }, 'bundle wiped from the boot partition');
  return outcome;
}
