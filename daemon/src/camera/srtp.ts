// The SRTP master key: inline in the config (base64) or in a provisioning file under /etc/outpost.
// Both the camera pipeline (srtpenc) and the Janus mountpoint (srtpcrypto) read it through here, so a
// bad key is reported the same way, naming the key or file and the fix, and never printing the key.
import { readFileSync, statSync } from 'node:fs';
import { srtpKeyProblem, type SrtpConfig } from '../config/schema.js';
import { OutpostError } from '../errors.js';
import type { SrtpKey } from './pipeline.js';

/** Resolve `sfu.srtp` to the key bytes. Throws SRTP_KEY_INVALID with the fix. */
export function loadSrtpKey(srtp: SrtpConfig): SrtpKey {
  const base64 = srtp.key ?? readKeyFile(srtp.keyFile ?? '');
  const where = srtp.key !== undefined ? 'sfu.srtp.key' : `sfu.srtp.keyFile ${srtp.keyFile}`;
  const problem = srtpKeyProblem(base64, srtp.suite);
  if (problem) {
    throw new OutpostError('SRTP_KEY_INVALID', `${where} ${problem}`, {
      hint: 'write the base64 key on one line; the suite is sfu.srtp.suite',
    });
  }
  return { suite: srtp.suite, masterKey: Buffer.from(base64, 'base64') };
}

/** Base64 of a key: what Janus's `srtpcrypto` and SDP's a=crypto carry. */
export function srtpKeyBase64(key: SrtpKey): string {
  return Buffer.from(key.masterKey).toString('base64');
}

function readKeyFile(file: string): string {
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch (error) {
    throw new OutpostError('SRTP_KEY_INVALID', `sfu.srtp.keyFile ${file} cannot be read`, {
      hint: 'check the path; provisioning installs the key under /etc/outpost',
      cause: error,
    });
  }
  // Secrets on disk are 0600 (DESIGN.md, security model): a key others can read is not used.
  if ((mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    throw new OutpostError(
      'SRTP_KEY_INVALID',
      `sfu.srtp.keyFile ${file} is readable by group or others (mode ${octal})`,
      { hint: `run: chmod 600 ${file} (and keep it owned by the service user)` },
    );
  }
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (error) {
    throw new OutpostError('SRTP_KEY_INVALID', `sfu.srtp.keyFile ${file} cannot be read`, {
      hint: 'make it readable by the service user (owner, mode 0600)',
      cause: error,
    });
  }
}
