// A file the config names for a secret or a certificate (password files, keys, CAs), read whole and
// trimmed. A missing or unreadable one is a config error that names the key and the file.
import { readFile } from 'node:fs/promises';
import { OutpostError } from '../errors.js';

/** `hint` says how the file is normally put there (which provisioning step). */
export async function readSecret(file: string, key: string, hint: string): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (error) {
    throw new OutpostError('CONFIG_UNREADABLE', `${key}: ${file} cannot be read`, {
      hint: `${hint}; it must be readable by the outpost user`,
      cause: error,
    });
  }
}
