// Checking a bundle before anything is written (docs/updates.md, "Refusals"): RAUC verifies its
// signature over every byte against the keyring in the image (`rauc info`, plain format), then the
// manifest is compared with this box: the compatible string (arch and boot method) and the version.
// Each refusal is a coded OutpostError with its own exit status (UPDATE_EXIT) and LED pattern.
import { open, stat } from 'node:fs/promises';
import { z } from 'zod';
import { OutpostError, type ErrorCode } from '../errors.js';
import { compareVersions, isVersion, type Release } from './release.js';
import { run } from './run.js';

/** Exit statuses of `outpost update` (docs/updates.md, "Exit statuses"). */
export const UPDATE_EXIT: Partial<Record<ErrorCode, number>> = {
  UPDATE_BUNDLE_MALFORMED: 20,
  UPDATE_SIGNATURE_INVALID: 21,
  UPDATE_UNTRUSTED: 22,
  UPDATE_WRONG_ARCH: 23,
  UPDATE_INCOMPATIBLE: 24,
  UPDATE_OLDER: 25,
  UPDATE_INSTALL_FAILED: 26,
  UPDATE_BUSY: 27,
  UPDATE_UNSUPPORTED: 28,
  UPDATE_TRANSFER_FAILED: 29,
};

export interface BundleInfo {
  compatible: string;
  version: string;
  arch: string;
  sizeBytes: number;
}

export interface CheckOptions {
  keyring: string;
  /** What runs here. */
  release: Release;
  /** Accept a version older than (or the same as) the running one. */
  allowOlder?: boolean;
  /** The rauc program (tests may point at another). */
  rauc?: string;
  timeoutMs?: number;
}

const infoSchema = z.object({ compatible: z.string(), version: z.string().nullable().optional() });

// A RAUC bundle starts with its squashfs payload (magic "hsqs", little-endian).
const SQUASHFS_MAGIC = Buffer.from('hsqs');

function refuse(code: ErrorCode, message: string, hint: string): OutpostError {
  return new OutpostError(code, message, { hint });
}

/** RAUC's words for a bundle it would not accept, as one of our refusals. */
function raucRefusal(file: string, stderr: string): OutpostError {
  const said = stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !/^rauc-Message:|^\S+:error:/.test(line))
    .join('; ');
  if (/unsafe bundle|unable to find mounted device|exclusive bundle access|unsafe filesystem/i.test(stderr)) {
    return refuse(
      'UPDATE_INSTALL_FAILED',
      `RAUC will not read ${file} where it is (${said})`,
      'the bundle must be a root-owned file on a local filesystem; the updater copies it to /data/update/install',
    );
  }
  if (/Invalid bundle format|Signature size|bundle size|too small/i.test(stderr)) {
    return refuse(
      'UPDATE_BUNDLE_MALFORMED',
      `${file} is incomplete: truncated or damaged at its end (${said})`,
      'copy the bundle again and compare its sha256 with the one published with it',
    );
  }
  if (
    /unable to get local issuer|self[- ]signed|certificate signature failure|unsuitable certificate|certificate has expired|not yet valid|no signer|unable to verify/i.test(
      stderr,
    )
  ) {
    return refuse(
      'UPDATE_UNTRUSTED',
      `${file} is signed by a key this box does not trust (${said})`,
      "install only bundles signed with your update key; this image's keyring is /etc/rauc/keyring.pem",
    );
  }
  if (
    /verification failure|content verify error|digest failure|signature verification failed/i.test(stderr)
  ) {
    return refuse(
      'UPDATE_SIGNATURE_INVALID',
      `${file} was changed or damaged after it was signed: its signature does not match its content (${said})`,
      'copy the bundle again from the release, and compare its sha256 with the published one',
    );
  }
  return refuse(
    'UPDATE_BUNDLE_MALFORMED',
    `${file} is not a bundle this box can read (${said || 'rauc info failed'})`,
    'use a .raucb file made by image-build/build.sh --bundle',
  );
}

/** Read the bundle's manifest through RAUC, which checks its signature first. Throws a refusal. */
export async function checkBundle(file: string, options: CheckOptions): Promise<BundleInfo> {
  let size: number;
  const head = Buffer.alloc(4);
  try {
    size = (await stat(file)).size;
    const handle = await open(file, 'r');
    try {
      await handle.read(head, 0, 4, 0);
    } finally {
      await handle.close();
    }
  } catch (error) {
    throw refuse(
      'UPDATE_BUNDLE_MALFORMED',
      `cannot read ${file}: ${(error as Error).message}`,
      'check the path, and that the stick or folder is readable',
    );
  }
  if (!head.equals(SQUASHFS_MAGIC)) {
    throw refuse(
      'UPDATE_BUNDLE_MALFORMED',
      `${file} is not an Outpost update bundle (it does not start with a squashfs image)`,
      'use a .raucb file made by image-build/build.sh --bundle',
    );
  }
  const result = await run(
    options.rauc ?? 'rauc',
    ['info', `--keyring=${options.keyring}`, '--output-format=json', file],
    { timeoutMs: options.timeoutMs ?? 15 * 60_000 },
  );
  if (result.status !== 0) throw raucRefusal(file, result.stderr);
  let info: z.output<typeof infoSchema>;
  try {
    info = infoSchema.parse(JSON.parse(result.stdout));
  } catch (error) {
    throw refuse(
      'UPDATE_BUNDLE_MALFORMED',
      `rauc info printed no manifest for ${file}: ${(error as Error).message}`,
      'use a .raucb file made by image-build/build.sh --bundle',
    );
  }
  const { release } = options;
  const match = /^outpost-([a-z0-9_]+)-([a-z0-9_]+)$/.exec(info.compatible);
  if (!match) {
    throw refuse(
      'UPDATE_INCOMPATIBLE',
      `${file} is not an Outpost bundle: its compatible string is "${info.compatible}", this box takes "${release.compatible}"`,
      'use a bundle made by image-build/build.sh --bundle for this box',
    );
  }
  const arch = match[1] ?? '';
  if (arch !== release.arch) {
    throw refuse(
      'UPDATE_WRONG_ARCH',
      `${file} is for ${arch} (${info.compatible}); this box is ${release.arch} (${release.compatible})`,
      `build the bundle with image-build/build.sh --arch ${release.arch} --bundle`,
    );
  }
  if (info.compatible !== release.compatible) {
    throw refuse(
      'UPDATE_INCOMPATIBLE',
      `${file} is for ${info.compatible}; this box is ${release.compatible} (same arch, another boot method)`,
      `use the bundle made for ${release.compatible}`,
    );
  }
  const version = info.version ?? '';
  if (!isVersion(version)) {
    throw refuse(
      'UPDATE_BUNDLE_MALFORMED',
      `${file} names no version (manifest version "${version}")`,
      'use a bundle made by image-build/build.sh --bundle --version MAJOR.MINOR.PATCH',
    );
  }
  const order = compareVersions(version, release.version);
  if (order <= 0 && !options.allowOlder) {
    throw refuse(
      'UPDATE_OLDER',
      order === 0
        ? `${file} is version ${version}, the version running now: nothing to update`
        : `${file} is version ${version}, older than the running ${release.version}`,
      'to install it anyway (going back to an older release), add --allow-older',
    );
  }
  return { compatible: info.compatible, version, arch, sizeBytes: size };
}

/** The exit status for an error: coded update problems 20–29, other coded problems 2, anything else 1. */
export function updateExitCode(error: unknown): number {
  if (!(error instanceof OutpostError)) return 1;
  return UPDATE_EXIT[error.code] ?? 2;
}
