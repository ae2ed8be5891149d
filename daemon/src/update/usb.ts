// A bundle from a USB stick (outpost-update-usb@.service, started by udev for the stick's filesystem):
// mounted read-only (nosuid, nodev, noexec) in the unit's own mount namespace, the bundle for this box
// copied to root's folder on the data partition (so pulling the stick mid-install changes nothing),
// the stick unmounted, then installed as any bundle is (install.ts).
import { copyFile, mkdir, open, readdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { OutpostError } from '../errors.js';
import { backend, installBundle, type InstallDeps, type Installed } from './install.js';
import { compareVersions, readRelease } from './release.js';
import { run } from './run.js';

/** Which of the stick's bundles to take: the only one, else the newest named for this box's arch. */
export function chooseBundle(names: readonly string[], arch: string): string | undefined {
  const bundles = names.filter((name) => name.endsWith('.raucb') && !name.startsWith('.'));
  if (bundles.length <= 1) return bundles[0];
  const mine = bundles
    .map((name) => ({ name, match: new RegExp(`^outpost-${arch}-(.+)\\.raucb$`).exec(name) }))
    .filter((entry) => entry.match !== null)
    .sort((a, b) => compareVersions(a.match?.[1] ?? '', b.match?.[1] ?? ''));
  return mine.at(-1)?.name;
}

export async function installFromUsb(
  device: string,
  options: { allowOlder?: boolean; mountpoint?: string },
  deps: InstallDeps,
): Promise<Installed | undefined> {
  const { paths, log } = deps;
  const mountpoint = options.mountpoint ?? '/run/outpost-update-usb/stick';
  await mkdir(mountpoint, { recursive: true });
  const mounted = await run('mount', ['-o', 'ro,nosuid,nodev,noexec', device, mountpoint], {
    timeoutMs: 60_000,
  });
  if (mounted.status !== 0) {
    throw new OutpostError(
      'UPDATE_BUNDLE_MALFORMED',
      `cannot mount the USB stick ${device}: ${mounted.stderr.trim()}`,
      {
        hint: 'use a stick with one FAT, exFAT or ext4 filesystem',
      },
    );
  }
  let copy: string | undefined;
  try {
    const release = await readRelease(paths.releaseFile);
    const name = chooseBundle(await readdir(mountpoint), release.arch);
    if (!name) {
      log.info({ event: 'update-usb-empty', device }, `no update bundle (*.raucb) at the top of ${device}`);
      return undefined;
    }
    const folder = join(paths.updateDir, 'install');
    await mkdir(folder, { recursive: true, mode: 0o700 });
    copy = join(folder, `usb-${basename(name)}`);
    log.info({ event: 'update-usb', device, bundle: name }, `copying ${name} from the USB stick`);
    await copyFile(join(mountpoint, name), copy);
    const handle = await open(copy, 'r');
    await handle.sync();
    await handle.close();
  } finally {
    await run('umount', [mountpoint], { timeoutMs: 60_000 });
  }
  try {
    const installed = await installBundle(
      copy,
      { allowOlder: options.allowOlder, via: 'usb', noReboot: true },
      deps,
    );
    await rm(copy, { force: true });
    log.info({ event: 'update-usb-done', device }, 'the USB stick can be removed');
    await (deps.reboot ?? (() => backend(paths, ['trial-reboot']).then(() => undefined)))();
    return installed;
  } finally {
    await rm(copy, { force: true });
  }
}
