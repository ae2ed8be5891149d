// Durable files: what the daemon writes so that, after a kill or a power cut, a file is whole, the old
// one or the new one, never half of each.
import { mkdir, open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Temp file, fsync, rename, fsync of the folder. With `makeFolder`, the folder is made first
 * (0750) when missing.
 */
export async function writeDurably(
  path: string,
  data: string | Buffer,
  options: { makeFolder?: boolean } = {},
): Promise<void> {
  if (options.makeFolder) await mkdir(dirname(path), { recursive: true, mode: 0o750 });
  const temp = `${path}.tmp`;
  const handle = await open(temp, 'w', 0o640);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, path);
  await syncDir(dirname(path));
}

/** fsync a folder: makes a rename or an unlink in it durable. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
