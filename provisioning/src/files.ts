// Durable file writes for the site directory and for /etc/outpost: write beside, fsync, rename, fsync
// the directory, so a crash or a pulled laptop battery leaves the old file or the new one, never half.
import { open, rename, mkdir, rm, readFile } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';

/** Modes used everywhere: secrets are readable by their owner only. */
export const SECRET_MODE = 0o600;
export const PUBLIC_MODE = 0o644;

export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } catch (error) {
    // Some filesystems (vfat on a boot partition, certain FUSE mounts) refuse fsync on a directory.
    if (!['EINVAL', 'ENOTSUP', 'EISDIR', 'EPERM'].includes((error as NodeJS.ErrnoException).code ?? '')) {
      throw error;
    }
  } finally {
    await handle.close();
  }
}

/** Write `data` to `file` atomically with `mode` (set before any byte is written). */
export async function writeFileAtomic(
  file: string,
  data: string | Buffer,
  mode: number,
  options: { chmodOptional?: boolean } = {},
): Promise<void> {
  const dir = dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const temp = join(dir, `.${basename(file)}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', mode);
  try {
    // The umask may have taken bits off. A FAT boot partition has no modes: chmod fails there, harmlessly.
    await handle.chmod(mode).catch((error: NodeJS.ErrnoException) => {
      if (!options.chmodOptional || error.code !== 'EPERM') throw error;
    });
    await handle.writeFile(data);
    await handle.sync();
  } catch (error) {
    await handle.close();
    await rm(temp, { force: true });
    throw error;
  }
  await handle.close();
  await rename(temp, file);
  await fsyncDirectory(dir);
}

/** File text, or undefined when the file does not exist. */
export async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
