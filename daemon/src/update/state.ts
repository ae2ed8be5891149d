// The updater's state: one JSON file on the data partition (/data/update/state.json), which both root
// slots see, written only by root (the installer and the health gate) and read by the daemon, which
// reports it on the retained `update` topic. Written atomically (temporary file, fsync, rename, fsync
// of the folder), so a power cut leaves the old state or the new one. Where the updater keeps its files
// is one object (UpdatePaths), so the suite can run it in a folder.
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { updateRelease, updateStateName } from '../mqtt/contract.js';

const release = updateRelease;

export const updateStateSchema = z.strictObject({
  phase: updateStateName.exclude(['receiving']),
  /** When this phase began, ms since the epoch (the writer's clock). */
  since: z.int().nonnegative(),
  /** What ran when the phase began. */
  from: release,
  /** What is being installed, tried, or was refused; null when idle. */
  target: release.nullable(),
  /** installing: RAUC's progress, percent. */
  progress: z.number().min(0).max(100).nullable(),
  /** refused, failed, rolled-back: why; trial: the health gate's reason for giving up, once it has one. */
  reason: z.string().nullable(),
  /** refused or failed: the error's stable code (UPDATE_*). */
  code: z.string().nullable(),
});

export type UpdateState = z.output<typeof updateStateSchema>;

/** Where the updater's files are. */
export interface UpdatePaths {
  /** Root's folder on the data partition: state.json, lock, install/ (bundles being installed). */
  updateDir: string;
  /** Received bundles (the daemon's data dir's update/): incoming/ and ready/. */
  receiveDir: string;
  /** The daemon's health report for the gate (tmpfs: /run/outpost/update-health.json). */
  healthFile: string;
  /** RAUC's keyring. */
  keyring: string;
  /** The release file of the running root. */
  releaseFile: string;
  /** The boot backend (image-build/files/outpost-boot). */
  bootBackend: string;
  /** The kernel command line (the booted slot). */
  cmdline: string;
  /** Where --allow-older is handed to the bundle's hook (which RAUC's service runs). */
  allowFile: string;
  /** First boot's result, when it refused a bundle (tmpfs; provisioning/src/result.ts). */
  firstbootResult: string;
}

export const BOX_PATHS: UpdatePaths = {
  updateDir: '/data/update',
  // /var/lib/outpost is a bind mount of /data/outpost: root's installer takes bundles by the /data path,
  // so moving one into updateDir is a rename on one mount.
  receiveDir: '/data/outpost/update',
  healthFile: '/run/outpost/update-health.json',
  keyring: '/etc/rauc/keyring.pem',
  releaseFile: '/usr/lib/outpost/release',
  bootBackend: '/usr/lib/outpost/update/boot',
  cmdline: '/proc/cmdline',
  // Written only for an install with --allow-older, and removed after it.
  allowFile: '/data/update/allow-version',
  firstbootResult: '/run/outpost-firstboot/result.json',
};

export const stateFile = (paths: UpdatePaths): string => join(paths.updateDir, 'state.json');

/** The state, or undefined when none was ever written (a box that never updated: idle). */
export async function readState(paths: UpdatePaths): Promise<UpdateState | undefined> {
  let text: string;
  try {
    text = await readFile(stateFile(paths), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const parsed = updateStateSchema.safeParse(JSON.parse(text));
  // A state this version cannot read (written by a newer one before a rollback) counts as none.
  return parsed.success ? parsed.data : undefined;
}

export async function writeState(paths: UpdatePaths, state: UpdateState): Promise<void> {
  await writeJsonAtomic(stateFile(paths), updateStateSchema.parse(state), 0o644);
}

/** Write JSON to a temporary file beside `file`, fsync it, rename it over `file`, fsync the folder. */
export async function writeJsonAtomic(file: string, value: unknown, mode: number): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const temporary = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await open(temporary, 'w', mode);
  try {
    await handle.writeFile(`${JSON.stringify(value)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, file);
  const folder = await open(dirname(file), 'r');
  try {
    await folder.sync();
  } finally {
    await folder.close();
  }
}
