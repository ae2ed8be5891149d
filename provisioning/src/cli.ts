#!/usr/bin/env node
// The `outpost-provision` command: parses arguments (commander) and calls into site.ts, bundle.ts and
// firstboot.ts; it holds no logic of its own. Exit statuses: 0 done (or already done), 2 usage or
// site-directory mistakes, 10–15 bundle problems (FirstbootExit, docs/provisioning.md).
import { Command, CommanderError, Option } from 'commander';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { describeError, OutpostError } from '../../daemon/src/errors.js';
import { program } from '../../daemon/src/program.js';
import { makeBundle, openBundle, sameFiles, type Trust } from './bundle.js';
import { readIfExists, SECRET_MODE, writeFileAtomic } from './files.js';
import { DEFAULT_BUNDLE, exitCodeFor, firstboot, FirstbootExit } from './firstboot.js';
import { fingerprint } from '../../daemon/src/tls/pki.js';
import { recordFirstbootResult } from './result.js';
import { addIdentity, initSite, readSite, revokeIdentity, type IdentityKind } from './site.js';
import {
  addCentreConsole,
  addSite,
  centrePaths,
  initCentre,
  removeSite,
  setBridge,
  type CentreInit,
} from './centre.js';
import { writeTrustKit } from './trust.js';

const out = (text: string): void => void process.stdout.write(`${text}\n`);

/** Run a command body; map its errors to a message on stderr and an exit status. */
function action<A extends unknown[]>(body: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await body(...args);
    } catch (error) {
      process.stderr.write(`outpost-provision: ${describeError(error)}\n`);
      process.exitCode = exitCodeFor(error);
    }
  };
}

const cameraList = (value: string): string[] =>
  value === '' || value === 'none' ? [] : value.split(',').map((cam) => cam.trim());

const siteOption = () =>
  new Option('-d, --dir <site>', 'site directory (default: $OUTPOST_SITE_DIR, else the current directory)');
const siteDir = (options: { dir?: string }): string =>
  resolve(options.dir ?? process.env.OUTPOST_SITE_DIR ?? '.');

function reportNewPassword(
  name: string,
  password: string | undefined,
  passwordFile: string | undefined,
): void {
  if (password === undefined) return;
  if (passwordFile === undefined)
    out(`password for ${name} (shown once; only its hash is kept): ${password}`);
  else out(`password for ${name} written to ${passwordFile} (0600)`);
}

function addCommand(parent: Command, kind: 'console' | 'staff'): void {
  parent
    .command('add')
    .description(`add a ${kind} account: a random password (shown once) and an optional client certificate`)
    .argument('<name>', `${kind} name (1–32 of a-z 0-9 -)`)
    .option('--cert', 'also issue a client certificate (CN = NAME) signed by the site CA')
    .option('--password-file <file>', 'write the password to this file (0600) instead of showing it')
    .option('--force', 'replace an existing account (new password and certificate)')
    .addOption(siteOption())
    .action(
      action(
        async (
          name: string,
          options: { cert?: boolean; passwordFile?: string; force?: boolean; dir?: string },
        ) => {
          const dir = siteDir(options);
          const result = await addIdentity(dir, {
            name,
            kind,
            cert: options.cert === true,
            passwordFile: options.passwordFile,
            force: options.force === true,
          });
          if (!result.created) return out(`${kind} ${name} already exists as asked: nothing changed`);
          out(
            `${kind} ${name} added to ${dir}${options.cert ? ` (client certificate in credentials/${name}/)` : ''}`,
          );
          reportNewPassword(name, result.password, options.passwordFile);
          out('re-bundle the hub to bring the account to the broker');
        },
      ),
    );
}

const centreOption = () =>
  new Option(
    '-c, --centre <dir>',
    'centre directory (default: $OUTPOST_CENTRE_DIR, else the current directory)',
  );
const centreDir = (options: { centre?: string }): string =>
  resolve(options.centre ?? process.env.OUTPOST_CENTRE_DIR ?? '.');

/** `centre …`: the operations centre's broker (docs/bridge.md). */
function centreCommands(cli: Command): void {
  const centre = cli
    .command('centre')
    .description("the operations centre's broker: CA, Mosquitto password file and ACL, sites' bridge kits");
  centre
    .command('init')
    .description("create a centre directory: CA, the central broker's certificate, Mosquitto config")
    .argument('<dir>', 'centre directory to create (keep it private; back it up)')
    .requiredOption('--host <name>', 'the central broker as the sites dial it (in its certificate)')
    .option('--ip <ip>', "the central broker's address (in its certificate; what the kits dial when given)")
    .option('--port <n>', 'TLS listener for password logins', (v) => Number(v))
    .option('--cert-port <n>', 'TLS listener for client-certificate logins', (v) => Number(v))
    .option('--listen <ip>', 'address the listeners bind to (default: every address)')
    .option('--force', 're-issue the broker certificate for a new address (the CA is kept)')
    .action(
      action(async (dir: string, options: CentreInit) => {
        const { changed } = await initCentre(resolve(dir), { ...options, force: options.force === true });
        if (changed.length === 0) return out(`centre in ${dir} already exists as asked: nothing changed`);
        out(`centre ${options.host} in ${dir}: ${changed.join(', ')}`);
        out(`mosquitto: include ${centrePaths(resolve(dir)).mosquittoConf} (or run mosquitto -c on it)`);
        out(
          `console at the centre: outpost centre console --config ${centrePaths(resolve(dir)).consoleConf}`,
        );
      }),
    );
  centre
    .command('add-site')
    .description("a site's bridge account: write only under its own site prefix; writes the site's kit")
    .argument('<site>', 'site name')
    .option('--cert', 'a client certificate signed by the centre CA instead of a password')
    .option('--force', 'replace existing credentials')
    .addOption(centreOption())
    .action(
      action(async (site: string, options: { cert?: boolean; force?: boolean; centre?: string }) => {
        const dir = centreDir(options);
        const result = await addSite(dir, {
          site,
          cert: options.cert === true,
          force: options.force === true,
        });
        if (!result.created) return out(`site ${site} already has this bridge account: nothing changed`);
        out(`site ${site}: bridge account added; kit in ${result.kit}`);
        out(`reload mosquitto (kill -HUP) to apply ${centrePaths(dir).passwd} and ${centrePaths(dir).acl}`);
        out(`on the site: outpost-provision bridge set ${result.kit} -d SITE_DIR, then re-bundle the hub`);
      }),
    );
  centre
    .command('remove-site')
    .description("remove a site's bridge account (its password entry, ACL and kit)")
    .argument('<site>', 'site name')
    .addOption(centreOption())
    .action(
      action(async (site: string, options: { centre?: string }) => {
        const { removed } = await removeSite(centreDir(options), site);
        out(
          removed ? `site ${site} removed: reload mosquitto` : `site ${site} has no account: nothing changed`,
        );
      }),
    );
  centre
    .command('console')
    .description('console accounts at the centre (read every site, send cmd and chat)')
    .command('add')
    .argument('<name>', 'account name')
    .option('--password-file <file>', 'write the password to this file (0600) instead of showing it')
    .option('--force', 'make a new password')
    .addOption(centreOption())
    .action(
      action(async (name: string, options: { passwordFile?: string; force?: boolean; centre?: string }) => {
        const result = await addCentreConsole(centreDir(options), name, options.force === true);
        if (!result.created) return out(`console ${name} already exists: nothing changed`);
        if (options.passwordFile && result.password !== undefined)
          await writeFileAtomic(options.passwordFile, `${result.password}\n`, SECRET_MODE);
        reportNewPassword(name, result.password, options.passwordFile);
        out('reload mosquitto (kill -HUP) to apply the password file and the ACL');
      }),
    );
}

function commands(): Command {
  const cli = program(
    'outpost-provision',
    'Offline provisioning for Outpost boxes: site CA, credentials, signed bundles, first boot',
  );

  const site = cli.command('site').description('create or show a site directory');
  site
    .command('init')
    .description('create a site: CA, hub certificate, site.yaml, identities with the hub device')
    .argument('<dir>', 'site directory to create (the source of truth: back it up, keep it private)')
    .requiredOption('--site <name>', 'site name (1–32 of a-z 0-9 -): first segment of every MQTT topic')
    .option('--hub-host <name>', 'hub host name; its first label is the hub device name', 'hub')
    .option('--hub-ip <ip>', 'hub LAN address: in its certificate, and what cameras connect to')
    .option('--sfu-host <host>', 'SFU address the cameras send RTP to (default: the hub address)')
    .option('--hub-cameras <list>', 'cameras on the hub box, comma-separated, or none', 'cam0')
    .option('--force', 'on an existing site: re-issue the hub certificate for a new address (the CA is kept)')
    .action(
      action(
        async (
          dir: string,
          options: {
            site: string;
            hubHost: string;
            hubIp?: string;
            sfuHost?: string;
            hubCameras: string;
            force?: boolean;
          },
        ) => {
          const started = performance.now();
          const result = await initSite(resolve(dir), {
            site: options.site,
            hubHost: options.hubHost,
            hubIp: options.hubIp,
            sfuHost: options.sfuHost,
            hubCameras: cameraList(options.hubCameras),
            force: options.force === true,
          });
          const ms = Math.round(performance.now() - started);
          if (result.changed.length === 0) {
            out(`site ${options.site} already exists in ${dir} as asked: nothing changed`);
          } else {
            out(`site ${options.site} in ${dir}: ${result.changed.join(', ')} (${ms} ms)`);
          }
          out(`site CA fingerprint (SHA-256): ${fingerprint(result.site.ca.certPem)}`);
        },
      ),
    );
  site
    .command('show')
    .description('print the site, its CA fingerprint, devices and accounts (no secrets)')
    .argument('[dir]', 'site directory', process.env.OUTPOST_SITE_DIR ?? '.')
    .action(
      action(async (dir: string) => {
        const { settings, identities, ca } = await readSite(resolve(dir));
        out(
          `site ${settings.site}: hub ${settings.hub.device} at ${settings.hub.host}${settings.hub.ip ? ` (${settings.hub.ip})` : ''}, SFU ${settings.sfu.host}`,
        );
        out(`CA fingerprint (SHA-256): ${fingerprint(ca.certPem)}`);
        for (const identity of identities.identities) {
          const device = settings.devices[identity.name];
          const what = device
            ? `${device.role} cameras=${device.cameras.map((c) => `${c.name}:${c.rtpPort}`).join(',') || 'none'}`
            : identity.role;
          out(`  ${identity.name}: ${what}${identity.certificate ? ' +cert' : ''}`);
        }
      }),
    );

  const device = cli.command('device').description('add or revoke a box');
  device
    .command('add')
    .description('add a box: credentials (kept in the site directory for its bundle), cameras and SRTP keys')
    .argument('<name>', 'device name (1–32 of a-z 0-9 -): its hostname and topic segment')
    .addOption(
      new Option('--role <role>', 'camera, or hub (the hub is made by site init)')
        .choices(['camera', 'hub'])
        .makeOptionMandatory(),
    )
    .option('--cameras <list>', 'camera names on this box, comma-separated, or none', 'cam0')
    .option('--cert', 'also issue a client certificate (CN = NAME) signed by the site CA')
    .option('--password-file <file>', 'also write the new password to this file (0600)')
    .option(
      '--force',
      'replace an existing device (new password and certificate; SRTP keys of kept cameras stay)',
    )
    .addOption(siteOption())
    .action(
      action(
        async (
          name: string,
          options: {
            role: IdentityKind;
            cameras: string;
            cert?: boolean;
            passwordFile?: string;
            force?: boolean;
            dir?: string;
          },
        ) => {
          const dir = siteDir(options);
          const result = await addIdentity(dir, {
            name,
            kind: options.role,
            cameras: cameraList(options.cameras),
            cert: options.cert === true,
            passwordFile: options.passwordFile,
            force: options.force === true,
          });
          if (!result.created) return out(`device ${name} already exists as asked: nothing changed`);
          out(
            `device ${name} (${options.role}) added to ${dir}; its password is kept in credentials/${name}/uplink.password`,
          );
          if (options.passwordFile) reportNewPassword(name, result.password, options.passwordFile);
          out(
            `next: outpost-provision bundle ${name} --out /media/…/outpost-bundle.json, and re-bundle the hub`,
          );
        },
      ),
    );
  device
    .command('revoke')
    .description(
      'remove an identity (device, console or staff); the hub refuses it once re-bundled (SIGHUP reload)',
    )
    .argument('<name>', 'identity name')
    .addOption(siteOption())
    .action(
      action(async (name: string, options: { dir?: string }) => {
        const { removed } = await revokeIdentity(siteDir(options), name);
        out(
          removed
            ? `${name} revoked: re-bundle the hub (or copy identities.json to it) and reload it`
            : `${name} does not exist: nothing changed`,
        );
      }),
    );

  const consoleCommand = cli.command('console').description('console operator accounts (read all, send cmd)');
  addCommand(consoleCommand, 'console');
  consoleCommand
    .command('trust')
    .description("write what a console machine or phone installs to trust the site console's certificate")
    .requiredOption(
      '-o, --out <dir>',
      'folder to write site-ca.crt, site-ca.cer, site-ca.mobileconfig, README.txt',
    )
    .addOption(siteOption())
    .action(
      action(async (options: { out: string; dir?: string }) => {
        const kit = await writeTrustKit(siteDir(options), resolve(options.out));
        out(`console: ${kit.url}`);
        out(`site CA fingerprint (SHA-256): ${kit.fingerprint}`);
        for (const file of kit.files) out(`  ${file}`);
        out('install it on each console machine and phone as README.txt says (docs/console.md)');
      }),
    );
  centreCommands(cli);
  cli
    .command('bridge')
    .description("the hub's bridge to an operations centre")
    .command('set')
    .description(
      'import a bridge kit (from `centre add-site`): the hub bridges to the centre once re-bundled',
    )
    .argument('<kit>', 'kit directory, CENTRE/sites/SITE')
    .option('--force', 'replace a bridge set before')
    .addOption(siteOption())
    .action(
      action(async (kit: string, options: { force?: boolean; dir?: string }) => {
        const dir = siteDir(options);
        const { changed } = await setBridge(dir, resolve(kit), options.force === true);
        if (!changed) return out('the site already bridges with this kit: nothing changed');
        const { settings } = await readSite(dir);
        out(
          `site ${settings.site} bridges to ${settings.bridge?.url ?? '?'} (${settings.bridge?.auth ?? '?'})`,
        );
        out(`next: outpost-provision bundle ${settings.hub.device} --out …, and install it on the hub`);
      }),
    );
  addCommand(cli.command('staff').description('on-site staff accounts (chat)'), 'staff');

  const bundle = cli
    .command('bundle')
    .description('write one signed bundle for a device (or: bundle verify PATH)')
    .argument('<name>', 'device name')
    .option(
      '-o, --out <path>',
      'bundle file to write (required), e.g. /media/tech/bootfs/outpost-bundle.json',
    )
    .option('--force', 'overwrite a different bundle already at --out')
    .addOption(siteOption())
    .action(
      action(async (name: string, options: { out?: string; force?: boolean; dir?: string }) => {
        // Checked here, not by commander: a mandatory option here would also bind `bundle verify`.
        if (options.out === undefined) {
          throw new OutpostError('USAGE_INVALID', `bundle ${name} needs --out PATH`, {
            hint: 'give the file to write, e.g. --out /media/tech/bootfs/outpost-bundle.json',
          });
        }
        const outFile = options.out;
        const dir = siteDir(options);
        const started = performance.now();
        const text = await makeBundle(dir, name);
        const ms = Math.round(performance.now() - started);
        const { ca } = await readSite(dir);
        const made = openBundle(text, 'the new bundle', { caPem: ca.certPem });
        const existing = await readIfExists(outFile);
        if (existing !== undefined) {
          let same = false;
          try {
            same = sameFiles(openBundle(existing, outFile, { caPem: ca.certPem }).files, made.files);
          } catch {
            same = false;
          }
          if (same) return out(`${outFile} already holds this bundle for ${name}: nothing changed`);
          if (!options.force) {
            throw new OutpostError('SITE_CONFLICT', `${outFile} exists and holds a different bundle`, {
              hint: 'add --force to replace it, or write to another path',
            });
          }
        }
        await writeFileAtomic(outFile, text, SECRET_MODE, { chmodOptional: true });
        const size = (await stat(outFile)).size;
        out(
          `bundle for ${name} (${made.envelope.role}, ${made.files.length} files, ${size} bytes, ${ms} ms) written to ${outFile}`,
        );
        out(`site CA fingerprint (SHA-256): ${made.caFingerprint}`);
      }),
    );
  bundle
    .command('verify')
    .description('check a bundle: signature by the trusted site CA, file list, config and identities')
    .argument('<path>', 'bundle file')
    .addOption(
      new Option('--ca <file>', 'trusted site CA certificate (SITE/ca/ca.crt)').conflicts('fingerprint'),
    )
    .option('--fingerprint <sha256>', 'trusted site CA SHA-256 fingerprint (hex, colons allowed)')
    .action(
      action(async (path: string, options: { ca?: string; fingerprint?: string }) => {
        let trust: Trust;
        if (options.ca) {
          const caPem = await readIfExists(options.ca);
          if (caPem === undefined) {
            throw new OutpostError('USAGE_INVALID', `--ca ${options.ca} does not exist`, {
              hint: 'give the site CA certificate, SITE/ca/ca.crt',
            });
          }
          trust = { caPem };
        } else if (options.fingerprint) {
          trust = { fingerprint: options.fingerprint };
        } else {
          throw new OutpostError('USAGE_INVALID', 'bundle verify needs the CA to trust', {
            hint: 'add --ca SITE/ca/ca.crt or --fingerprint SHA256 (printed by `outpost-provision site show`)',
          });
        }
        const text = await readIfExists(path);
        if (text === undefined) {
          throw new OutpostError('USAGE_INVALID', `${path} does not exist`, { hint: 'check the path' });
        }
        const opened = openBundle(text, path, trust);
        out(
          `${path}: OK: ${opened.envelope.role} ${opened.envelope.device} on site ${opened.envelope.site}, made ${opened.envelope.createdAt}, signed by CA ${opened.caFingerprint}`,
        );
        for (const file of opened.files)
          out(`  ${file.mode.toString(8).padStart(4, '0')} ${file.path} (${file.content.length} bytes)`);
      }),
    );

  cli
    .command('firstboot')
    .description('on the box: apply the bundle from the boot partition (outpost-firstboot.service)')
    .option('--root <dir>', 'filesystem root to provision (tests use a temp dir)', '/')
    .option('--bundle <file>', `bundle path (default: ROOT${DEFAULT_BUNDLE})`)
    .option('--fingerprint-file <file...>', 'CA fingerprint files to pin the CA before first use')
    .option('--no-hostname', 'do not set the hostname')
    .action(
      action(
        async (options: { root: string; bundle?: string; fingerprintFile?: string[]; hostname: boolean }) => {
          // stderr: journald keeps it (outpost-firstboot.service), and stdout stays free for people.
          const log = pino(
            { base: undefined, timestamp: pino.stdTimeFunctions.isoTime },
            pino.destination({ fd: 2, sync: true }),
          );
          try {
            const outcome = await firstboot({
              root: resolve(options.root),
              bundle: options.bundle,
              fingerprintFiles: options.fingerprintFile,
              hostname: options.hostname,
              log,
            });
            log.info({ event: 'done', outcome }, 'first boot finished');
            await recordFirstbootResult(process.env, undefined);
            const root = resolve(options.root);
            if (root !== '/' && outcome !== 'no-bundle') {
              // The config is the bundle's, naming /etc/outpost and /var/lib/outpost as on the box.
              process.stdout.write(
                `installed under ${root}; its config names /etc/outpost and /var/lib/outpost as on the box: ` +
                  `run it with \`outpost run --root ${root}\`, which takes those paths under ${root}\n`,
              );
            }
          } catch (error) {
            const code = error instanceof OutpostError ? error.code : 'INTERNAL';
            log.error({ event: 'refused', code, exit: exitCodeFor(error) }, describeError(error));
            process.exitCode = exitCodeFor(error);
            // For the status LED (docs/leds.md); never a reason to fail differently.
            await recordFirstbootResult(process.env, {
              exit: exitCodeFor(error),
              code,
              message: describeError(error),
              at: Date.now(),
            }).catch(() => undefined);
          }
        },
      ),
    );
  return cli;
}

try {
  await commands().parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    process.exitCode = error.exitCode === 0 ? 0 : FirstbootExit.USAGE;
  } else {
    process.stderr.write(`outpost-provision: ${describeError(error)}\n`);
    process.exitCode = FirstbootExit.INTERNAL;
  }
}
