// `outpost update …`: the updater's verbs (docs/updates.md). On the box, as root: install, gate, usb
// (the units run these), status and check. From the hub or a laptop: push. Exit statuses: 0 done,
// 2 usage or config mistake, 20–29 a refused bundle or a failed install (check.ts UPDATE_EXIT).
import { Command, Option } from 'commander';
import { DEFAULT_CONFIG_PATH, loadConfig } from '../config/load.js';
import { describeError, ExitCode } from '../errors.js';
import type { CommandShell } from '../lifecycle/shell.js';
import { createLogger } from '../log.js';
import type { ToolOptions } from '../mqtt/tool-client.js';
import { checkBundle, UPDATE_EXIT, updateExitCode } from './check.js';
import { runGate } from './gate.js';
import { installBundle, installQueued, backend } from './install.js';
import { pushBundle, type PushResult } from './push.js';
import { bootedSlot, readRelease } from './release.js';
import { BOX_PATHS, readState, type UpdatePaths } from './state.js';
import { installFromUsb } from './usb.js';

/** The box's paths; OUTPOST_UPDATE_PATHS (JSON) moves them, for the suite. */
function paths(): UpdatePaths {
  const moved = process.env.OUTPOST_UPDATE_PATHS;
  return moved ? { ...BOX_PATHS, ...(JSON.parse(moved) as Partial<UpdatePaths>) } : BOX_PATHS;
}

function logger() {
  return createLogger('info');
}

/**
 * `push`'s exit status: 0 when every box committed (or, with --no-wait, has the bundle); when boxes
 * refused or failed for one reason, that reason's status (a tampered bundle: 21 as `install` says);
 * else 26.
 */
export function pushExitCode(results: readonly PushResult[]): number {
  const bad = results.filter((result) => result.outcome !== 'committed' && result.outcome !== 'sent');
  if (bad.length === 0) return 0;
  const statuses = new Set(
    bad.map(
      (result) => (result.code ? UPDATE_EXIT[result.code as keyof typeof UPDATE_EXIT] : undefined) ?? 26,
    ),
  );
  return statuses.size === 1 ? ([...statuses][0] ?? 26) : 26;
}

export function registerUpdateCommands(cli: Command, shell: CommandShell): void {
  /** Run a verb; a refusal or failure prints its message and the fix, and sets the exit status. */
  const guarded = async (verb: string, work: () => Promise<void>): Promise<void> => {
    try {
      await work();
    } catch (error) {
      process.stderr.write(`outpost update ${verb}: ${describeError(error)}\n`);
      shell.setExitCode(updateExitCode(error));
    }
  };

  const update = cli
    .command('update')
    .description(
      'software updates: signed bundles into the idle root slot, committed once healthy (docs/updates.md)',
    );

  update
    .command('status')
    .description('this box: version, booted slot, the last update and the boot entries')
    .option('--json', 'print one JSON object')
    .action((options: { json?: boolean }) =>
      guarded('status', async () => {
        const where = paths();
        const [release, slot, state, boot] = await Promise.all([
          readRelease(where.releaseFile).catch((error: unknown) => ({ error: describeError(error) })),
          bootedSlot(where.cmdline),
          readState(where),
          backend(where, ['show']).then((result) => result.stdout.trim() || result.stderr.trim()),
        ]);
        if (options.json) {
          process.stdout.write(`${JSON.stringify({ release, slot, state: state ?? null, boot })}\n`);
          return;
        }
        const version = 'version' in release ? `${release.version} (${release.compatible})` : release.error;
        process.stdout.write(`running ${version}, slot ${slot ?? 'unknown'}\n`);
        process.stdout.write(
          state
            ? `last update: ${state.phase} since ${new Date(state.since).toISOString()}${state.target ? `, ${state.target.version} in slot ${state.target.slot ?? '?'}` : ''}${state.reason ? `: ${state.reason}` : ''}\n`
            : 'no update yet\n',
        );
        process.stdout.write(`${boot}\n`);
      }),
    );

  update
    .command('check')
    .description('check a bundle as an install would (signature, compatibility, version), and write nothing')
    .argument('<bundle>', 'the .raucb file')
    .option('--allow-older', 'accept a version older than (or the same as) the running one')
    .action((file: string, options: { allowOlder?: boolean }) =>
      guarded('check', async () => {
        const where = paths();
        const info = await checkBundle(file, {
          keyring: where.keyring,
          release: await readRelease(where.releaseFile),
          allowOlder: options.allowOlder === true,
        });
        process.stdout.write(
          `${file}: ${info.version} for ${info.compatible}, signature good: this box would install it\n`,
        );
      }),
    );

  update
    .command('install')
    .description('install a bundle into the idle slot and reboot into it on trial (root)')
    .argument('[bundle]', 'the .raucb file')
    .option('--allow-older', 'install a version older than (or the same as) the running one')
    .option('--no-reboot', 'do not reboot: the next reboot tries the new slot')
    .option('--queued', 'install the bundles received over the LAN (outpost-update-install.service)')
    .action(
      (file: string | undefined, options: { allowOlder?: boolean; reboot: boolean; queued?: boolean }) =>
        guarded('install', async () => {
          const deps = { paths: paths(), log: logger() };
          if (options.queued) {
            const failure = await installQueued(deps);
            if (failure !== undefined) throw failure;
            return;
          }
          if (!file) throw new Error('give the bundle to install, or --queued');
          await installBundle(
            file,
            { allowOlder: options.allowOlder === true, noReboot: !options.reboot, via: 'cli' },
            deps,
          );
        }),
    );

  update
    .command('gate')
    .description(
      'the health gate, at every boot: commit a slot on trial once the daemon is healthy, or go back (root)',
    )
    .option('-c, --config <file>', `the daemon's config, for update.* (default: ${DEFAULT_CONFIG_PATH})`)
    .action((options: { config?: string }) =>
      guarded('gate', async () => {
        const config = await loadConfig(options.config ?? DEFAULT_CONFIG_PATH).catch(() => undefined);
        // An image built with --health-window (emulation, where a boot is ten times slower) sets this.
        const override = Number(process.env.OUTPOST_UPDATE_WINDOW_SECONDS);
        const window = override > 0 ? override : (config?.update.healthWindowSeconds ?? 180);
        const settle = config?.update.healthySettleSeconds ?? 15;
        await runGate({ paths: paths(), log: logger(), windowMs: window * 1000, settleMs: settle * 1000 });
      }),
    );

  update
    .command('usb')
    .description('install the bundle on a USB stick (outpost-update-usb@.service runs this; root)')
    .argument('<device>', 'the stick’s filesystem, e.g. /dev/sda1')
    .option('--allow-older', 'install a version older than (or the same as) the running one')
    .action((device: string, options: { allowOlder?: boolean }) =>
      guarded('usb', async () => {
        await installFromUsb(
          device,
          { allowOlder: options.allowOlder === true },
          { paths: paths(), log: logger() },
        );
      }),
    );

  update
    .command('push')
    .description('send a bundle to boxes over the site LAN; resumable (run it again after a cut)')
    .argument('<bundle>', 'the .raucb file')
    .addOption(new Option('--device <name...>', 'the boxes to update').conflicts('all'))
    .option('--all', 'every box whose status is online')
    .option('--allow-older', 'let the boxes install a version older than theirs')
    .option('--no-wait', 'return once each box has the bundle, without following the install')
    .addOption(
      new Option(
        '-c, --config <file>',
        `this box's config, for its broker (default: ${DEFAULT_CONFIG_PATH})`,
      ).conflicts('defaults'),
    )
    .option('--defaults', 'the broker of a daemon started with `outpost run --defaults`')
    .option('--url <url>', 'a remote broker instead, e.g. mqtts://hub.plant.lan:8883')
    .option('--username <name>', 'with --url: a console identity')
    .option('--password-file <file>', 'with --url: file holding its password')
    .option('--ca <file>', 'with --url mqtts://: the site CA certificate')
    .option('--site <name>', 'with --url: the site name')
    .action(
      (
        file: string,
        options: ToolOptions & { device?: string[]; all?: boolean; allowOlder?: boolean; wait: boolean },
      ) =>
        guarded('push', async () => {
          if (!options.all && !options.device?.length) {
            process.stderr.write('outpost update push: name the boxes with --device NAME…, or --all\n');
            shell.setExitCode(ExitCode.CONFIG);
            return;
          }
          const tty = process.stderr.isTTY === true;
          const results = await pushBundle(file, {
            ...options,
            devices: options.all ? 'all' : (options.device ?? []),
            wait: options.wait,
            say: (line) => process.stdout.write(`${tty ? '\r\x1b[K' : ''}${line}\n`),
            progress: (line) => {
              if (tty) process.stderr.write(`\r\x1b[K${line.slice(0, (process.stderr.columns || 120) - 1)}`);
            },
          });
          for (const result of results) {
            process.stdout.write(
              `${result.device}: ${result.outcome}${result.version ? ` (running ${result.version})` : ''}${result.reason ? `: ${result.reason}` : ''}\n`,
            );
          }
          const status = pushExitCode(results);
          if (status !== 0) shell.setExitCode(status);
        }),
    );
}
