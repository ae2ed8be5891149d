// What this box runs: the release file the image build writes (/usr/lib/outpost/release: VERSION, ARCH,
// BOOT_METHOD, COMPATIBLE; image-build/stages/install-outpost.sh), the root slot it booted (rauc.slot=
// on the kernel command line), and how two versions compare. The updater compares every bundle with it.
import { readFile } from 'node:fs/promises';
import { OutpostError } from '../errors.js';

export const RELEASE_FILE = '/usr/lib/outpost/release';

export type Slot = 'A' | 'B';

export interface Release {
  version: string;
  arch: string;
  bootMethod: string;
  /** The compatible string a bundle must carry: outpost-ARCH-BOOTMETHOD. */
  compatible: string;
}

/** Parse KEY=VALUE lines. */
export function parseRelease(text: string, file = RELEASE_FILE): Release {
  const fields = new Map(
    text
      .split('\n')
      .map((line) => /^([A-Z_]+)=(.*)$/.exec(line.trim()))
      .filter((match) => match !== null)
      .map((match) => [match[1] ?? '', match[2] ?? '']),
  );
  const get = (key: string): string => {
    const value = fields.get(key);
    if (!value) {
      throw new OutpostError('UPDATE_UNSUPPORTED', `${file} has no ${key}=`, {
        hint: 'this root was not built by image-build/build.sh; updates need an Outpost image',
      });
    }
    return value;
  };
  return {
    version: get('VERSION'),
    arch: get('ARCH'),
    bootMethod: get('BOOT_METHOD'),
    compatible: get('COMPATIBLE'),
  };
}

export async function readRelease(file = RELEASE_FILE): Promise<Release> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new OutpostError('UPDATE_UNSUPPORTED', `cannot read ${file}: ${(error as Error).message}`, {
      hint: 'updates need an Outpost image (image-build/build.sh), which writes this file',
      cause: error,
    });
  }
  return parseRelease(text, file);
}

/** The slot on the kernel command line (rauc.slot=A|B), or null when booted some other way. */
export function slotFromCmdline(cmdline: string): Slot | null {
  const match = /(?:^|\s)rauc\.slot=([AB])(?:\s|$)/.exec(cmdline);
  return (match?.[1] as Slot | undefined) ?? null;
}

export async function bootedSlot(cmdlineFile = '/proc/cmdline'): Promise<Slot | null> {
  return slotFromCmdline(await readFile(cmdlineFile, 'utf8').catch(() => ''));
}

export function otherSlot(slot: Slot): Slot {
  return slot === 'A' ? 'B' : 'A';
}

const VERSION = /^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;

export function isVersion(text: string): boolean {
  return VERSION.test(text);
}

/**
 * Semantic-version order (semver.org §11): MAJOR.MINOR.PATCH numerically, a pre-release before its
 * release, pre-release identifiers numerically when numeric, else as text; build metadata ignored.
 * Negative when a < b. A string that is not a version sorts before every version.
 */
export function compareVersions(a: string, b: string): number {
  const x = VERSION.exec(a);
  const y = VERSION.exec(b);
  if (!x || !y) return x ? 1 : y ? -1 : a.localeCompare(b);
  for (let i = 1; i <= 3; i++) {
    const difference = Number(x[i]) - Number(y[i]);
    if (difference !== 0) return Math.sign(difference);
  }
  const [pa, pb] = [x[4], y[4]];
  if (pa === pb) return 0;
  if (pa === undefined) return 1;
  if (pb === undefined) return -1;
  const [ia, ib] = [pa.split('.'), pb.split('.')];
  for (let i = 0; i < Math.max(ia.length, ib.length); i++) {
    const [sa, sb] = [ia[i], ib[i]];
    if (sa === undefined) return -1;
    if (sb === undefined) return 1;
    const [na, nb] = [/^\d+$/.test(sa), /^\d+$/.test(sb)];
    if (na && nb && Number(sa) !== Number(sb)) return Math.sign(Number(sa) - Number(sb));
    if (na !== nb) return na ? -1 : 1;
    if (sa !== sb) return sa < sb ? -1 : 1;
  }
  return 0;
}
