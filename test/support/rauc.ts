// A box's updater on files, for the suite: RAUC's own service (Debian's rauc 1.8) on a private D-Bus
// session bus, two root slots that are plain files, a folder for the boot partition, the boot backend
// (image-build/files/outpost-boot) and the bundle hook on them, keys made by image-build/update-key.sh
// and bundles made by image-build/make-bundle.sh. Only the block devices and the reboot are stand-ins.
// Needs root (RAUC mounts the bundle's squashfs on a loop device) and rauc, squashfs-tools, dbus.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { UpdatePaths } from '../../daemon/src/update/state.js';
import { REPO } from './processes.js';

const tools = ['rauc', 'mksquashfs', 'dbus-daemon', 'mkfs.ext4'];

/** Why RAUC cannot run here, or undefined when it can. */
export function raucUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'RAUC mounts bundles on loop devices: needs root';
  for (const tool of tools) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0)
      return `${tool} missing: run bash .ci/setup`;
  }
  if (!existsSync('/dev/loop-control')) return 'no loop devices';
  return undefined;
}

function sh(command: string, args: string[], cwd?: string): string {
  const result = spawnSync(command, args, { encoding: 'utf8', cwd });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')}: ${result.stderr}${result.stdout}`);
  return result.stdout;
}

export function sha256Of(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

export interface RaucBox {
  dir: string;
  paths: UpdatePaths;
  esp: string;
  slot: (name: 'A' | 'B') => string;
  key: string;
  otherKey: string;
  /** Environment for `outpost update …` and rauc clients: the session bus and the moved paths. */
  env: NodeJS.ProcessEnv;
  /** Boot as this slot: the kernel command line the backend and the CLI read; RAUC's service restarts. */
  bootAs(slot: 'A' | 'B'): Promise<void>;
  /** A bundle of a tiny root, signed with `key` (default: the box's). */
  bundle(name: string, options: { version: string; compatible?: string; key?: string }): string;
  close(): Promise<void>;
}

export async function raucBox(running = '1.0.0'): Promise<RaucBox> {
  const dir = await mkdtemp(join(tmpdir(), 'outpost-rauc-'));
  const esp = join(dir, 'esp');
  const root = join(dir, 'running-root');
  await mkdir(join(esp, 'loader/entries'), { recursive: true });
  await mkdir(join(root, 'usr/lib/outpost'), { recursive: true });
  await mkdir(join(root, 'etc'), { recursive: true });
  await writeFile(
    join(root, 'usr/lib/outpost/release'),
    `VERSION=${running}\nARCH=amd64\nBOOT_METHOD=efi\nCOMPATIBLE=outpost-amd64-efi\n`,
  );
  await writeFile(join(root, 'etc/hostname'), 'box1\n');
  await writeFile(join(root, 'etc/machine-id'), 'a'.repeat(32) + '\n');
  const cmdline = join(dir, 'cmdline');
  await writeFile(cmdline, 'root=PARTUUID=4f757470-02 rauc.slot=A\n');
  await writeFile(
    join(dir, 'boot.conf'),
    `BOOT_METHOD=efi\nESP=${esp}\nDISK_ID=4f757470\nTRIES=1\nCMDLINE="console=ttyS0"\n`,
  );
  const backend = join(dir, 'boot');
  await writeFile(
    backend,
    `#!/bin/sh\nOUTPOST_BOOT_CONF=${dir}/boot.conf PROC_CMDLINE=${cmdline} VCIO=${dir}/vcio exec ${REPO}/image-build/files/outpost-boot "$@"\n`,
  );
  await chmod(backend, 0o755);
  for (const slot of ['slotA', 'slotB']) sh('truncate', ['-s', '64M', join(dir, slot)]);
  // Slot A holds a "running" root; its kernel is on the boot partition, committed.
  const slotRoot = await tinyRoot(dir, 'root-v1', running);
  sh('mkfs.ext4', ['-q', '-F', '-d', slotRoot, join(dir, 'slotA')]);
  sh(backend, ['install-kernel', 'A', slotRoot]);
  sh(backend, ['init', 'A']);
  await writeFile(
    join(dir, 'system.conf'),
    [
      '[system]',
      'compatible=outpost-amd64-efi',
      'bootloader=custom',
      `mountprefix=${dir}/mnt`,
      `statusfile=${dir}/rauc.status`,
      'bundle-formats=plain',
      '[keyring]',
      `path=${dir}/key/keyring.pem`,
      'check-purpose=codesign',
      '[handlers]',
      `bootloader-custom-backend=${backend}`,
      '[slot.rootfs.0]',
      `device=${dir}/slotA`,
      'type=ext4',
      'bootname=A',
      'resize=true',
      '[slot.rootfs.1]',
      `device=${dir}/slotB`,
      'type=ext4',
      'bootname=B',
      'resize=true',
      '',
    ].join('\n'),
  );
  await mkdir(join(dir, 'mnt'), { recursive: true });
  const key = join(dir, 'key');
  const otherKey = join(dir, 'other-key');
  sh(join(REPO, 'image-build/update-key.sh'), [key]);
  sh(join(REPO, 'image-build/update-key.sh'), [otherKey, '--name', 'Somebody else']);

  const paths: UpdatePaths = {
    updateDir: join(dir, 'data/update'),
    receiveDir: join(dir, 'data/outpost/update'),
    healthFile: join(dir, 'run/update-health.json'),
    keyring: join(key, 'keyring.pem'),
    releaseFile: join(root, 'usr/lib/outpost/release'),
    bootBackend: backend,
    cmdline,
    allowFile: join(dir, 'run/allow-version'),
    firstbootResult: join(dir, 'run/firstboot-result.json'),
  };
  // The session bus RAUC's service and its clients meet on (DBUS_STARTER_BUS_TYPE=session, as in RAUC's
  // own test suite).
  const bus = spawn('dbus-daemon', ['--session', '--nofork', '--print-address=1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const address = await new Promise<string>((resolve, reject) => {
    let text = '';
    bus.stdout.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      if (text.includes('\n')) resolve(text.trim());
    });
    bus.on('exit', () => reject(new Error('dbus-daemon exited')));
  });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DBUS_SESSION_BUS_ADDRESS: address,
    DBUS_STARTER_BUS_TYPE: 'session',
    OUTPOST_UPDATE_PATHS: JSON.stringify(paths),
    // The bundle hook, run by RAUC's service, finds the running root and the backend here.
    OUTPOST_HOOK_ROOT: root,
    OUTPOST_HOOK_BOOT: backend,
    OUTPOST_HOOK_ALLOW: paths.allowFile,
  };
  let service: ChildProcess | undefined;
  const startService = async (slot: 'A' | 'B'): Promise<void> => {
    service = spawn(
      'rauc',
      ['-c', join(dir, 'system.conf'), `--mount=${dir}/mnt`, 'service', `--override-boot-slot=${slot}`],
      {
        env,
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let log = '';
    service.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
    const deadline = Date.now() + 15_000;
    // Up once it owns its bus name.
    while (
      spawnSync(
        'dbus-send',
        [
          '--session',
          '--print-reply',
          '--dest=org.freedesktop.DBus',
          '/org/freedesktop/DBus',
          'org.freedesktop.DBus.NameHasOwner',
          'string:de.pengutronix.rauc',
        ],
        { env, encoding: 'utf8' },
      ).stdout.includes('boolean false')
    ) {
      if (Date.now() > deadline) throw new Error(`rauc service did not start: ${log}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  const stopService = async (): Promise<void> => {
    if (!service || service.exitCode !== null) return;
    const exited = new Promise((resolve) => service?.once('exit', resolve));
    service.kill('SIGTERM');
    await exited;
  };
  await startService('A');
  return {
    dir,
    paths,
    esp,
    slot: (name) => join(dir, name === 'A' ? 'slotA' : 'slotB'),
    key,
    otherKey,
    env,
    async bootAs(slot) {
      await writeFile(cmdline, `root=PARTUUID=4f757470-0${slot === 'A' ? 2 : 3} rauc.slot=${slot}\n`);
      await stopService();
      await startService(slot);
    },
    bundle(name, options) {
      const compatible = options.compatible ?? 'outpost-amd64-efi';
      const tree = join(dir, 'roots', name);
      mkdirSync(join(tree, 'boot'), { recursive: true });
      mkdirSync(join(tree, 'usr/lib/outpost'), { recursive: true });
      writeFileSync(join(tree, 'boot/vmlinuz-6.1.0-test'), `kernel-${options.version}\n`);
      writeFileSync(join(tree, 'boot/initrd.img-6.1.0-test'), 'initrd\n');
      writeFileSync(
        join(tree, 'usr/lib/outpost/release'),
        `VERSION=${options.version}\nARCH=amd64\nBOOT_METHOD=efi\nCOMPATIBLE=${compatible}\n`,
      );
      const image = join(dir, 'roots', `${name}.ext4`);
      sh('mkfs.ext4', ['-q', '-F', '-d', tree, image, '8M']);
      const out = join(dir, `${name}.raucb`);
      sh(join(REPO, 'image-build/make-bundle.sh'), [
        '--root-image',
        image,
        '--version',
        options.version,
        '--compatible',
        compatible,
        '--update-key',
        options.key ?? key,
        '--out',
        out,
      ]);
      return out;
    },
    async close() {
      await stopService();
      bus.kill('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function tinyRoot(dir: string, name: string, version: string): Promise<string> {
  const tree = join(dir, name);
  await mkdir(join(tree, 'boot'), { recursive: true });
  await mkdir(join(tree, 'usr/lib/outpost'), { recursive: true });
  await writeFile(join(tree, 'boot/vmlinuz-6.1.0-test'), `kernel-${version}\n`);
  await writeFile(join(tree, 'boot/initrd.img-6.1.0-test'), 'initrd\n');
  await writeFile(
    join(tree, 'usr/lib/outpost/release'),
    `VERSION=${version}\nARCH=amd64\nBOOT_METHOD=efi\nCOMPATIBLE=outpost-amd64-efi\n`,
  );
  return tree;
}
