#!/usr/bin/env node
// The `outpost` command. Parses arguments (commander) and calls into the rooms; it holds no logic of
// its own. Exit statuses are ExitCode (docs/operations.md): 2 for any usage or config mistake.
import { Command, CommanderError, Option } from 'commander';
import { stringify } from 'yaml';
import { readFile } from 'node:fs/promises';
import { askDaemonForClip } from './clips/ask.js';
import { pullClips } from './clips/pull.js';
import {
  ConfigError,
  DEFAULT_CONFIG_PATH,
  embeddedDefaults,
  loadConfig,
  redactSecrets,
} from './config/load.js';
import type { Config } from './config/schema.js';
import { localAdminPasswordFile } from './mqtt/broker.js';
import { formatConfigError } from './config/report.js';
import { describeError, ExitCode } from './errors.js';
import { runDaemon } from './main.js';
import { VERSION } from './version.js';

function program(): Command {
  const cli = new Command('outpost')
    .description('Outpost edge appliance daemon: cameras to the site SFU, embedded MQTT broker')
    .version(VERSION, '-V, --version', 'print the version and exit')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  cli
    .command('run')
    .description('run the daemon in the foreground (systemd starts it this way)')
    .addOption(
      new Option('-c, --config <file>', `config file (default: ${DEFAULT_CONFIG_PATH})`).conflicts(
        'defaults',
      ),
    )
    .option('--defaults', 'run on the embedded defaults: one test-pattern camera, broker on 127.0.0.1')
    .action(async (options: { config?: string; defaults?: boolean }) => {
      const code = await runDaemon({ configPath: options.config, defaults: options.defaults === true });
      // Exit now rather than wait for stray handles: the stop bound promised to systemd includes this.
      process.exit(code);
    });

  cli
    .command('check-config')
    .description('validate a config file: list every problem (exit 2) or print the effective config (exit 0)')
    .argument('[file]', 'config file', DEFAULT_CONFIG_PATH)
    .action(async (file: string) => {
      try {
        const config = await loadConfig(file);
        process.stdout.write(
          `# ${file}: OK. Effective configuration (defaults filled in, secrets redacted):\n`,
        );
        process.stdout.write(stringify(redactSecrets(config)));
        process.exitCode = ExitCode.OK;
      } catch (error) {
        process.stderr.write(
          `${error instanceof ConfigError ? formatConfigError(error) : `outpost: ${describeError(error)}`}\n`,
        );
        process.exitCode = ExitCode.CONFIG;
      }
    });

  cli
    .command('clip')
    .description("ask this box's running daemon for a panic clip: the alert goes out at once")
    .addOption(
      new Option(
        '-c, --config <file>',
        `the daemon's config file (default: ${DEFAULT_CONFIG_PATH})`,
      ).conflicts('defaults'),
    )
    .option('--defaults', 'the daemon runs on the embedded defaults (outpost run --defaults)')
    .option('--camera <name...>', 'cameras in the clip (default: clips.cameras, or every camera)')
    .action(async (options: { config?: string; defaults?: boolean; camera?: string[] }) => {
      const config = await configFor(options);
      if (!config) return;
      try {
        const result = await askDaemonForClip(config, { cameras: options.camera });
        process.stdout.write(
          `alert sent; clip ${result.clipId} (${result.cameras.join(', ')})${result.relatedClipId ? `, linked to ${result.relatedClipId}` : ''} is being recorded\n`,
        );
        process.exitCode = ExitCode.OK;
      } catch (error) {
        process.stderr.write(`outpost clip: ${describeError(error)}\n`);
        process.exitCode = ExitCode.START_FAILED;
      }
    });

  cli
    .command('clips')
    .description('panic clips, console side')
    .command('pull')
    .description('receive alerts and clips from the site (persistent session), verify sha256, write MP4s')
    .requiredOption('-o, --out <dir>', 'where clips are written: DIR/{device}/{clipId}.mp4')
    .option('--url <url>', 'the site broker', 'mqtt://127.0.0.1:1883')
    .option('--site <site>', 'the site name (first topic segment)', 'demo')
    .option('--username <name>', 'a console identity', 'local-admin')
    .option('--password-file <file>', "that identity's password (default: the local-admin password)")
    .option('--ca <file>', 'the site CA (PEM), for mqtts://')
    .option('--once', 'exit after the first verified clip')
    .option('--timeout <seconds>', 'exit after this many seconds', (value) => Number(value))
    .action(
      async (options: {
        out: string;
        url: string;
        site: string;
        username: string;
        passwordFile?: string;
        ca?: string;
        once?: boolean;
        timeout?: number;
      }) => {
        const passwordFile = options.passwordFile ?? localAdminPasswordFile(embeddedDefaults().dataDir);
        let password: string;
        let ca: Buffer | undefined;
        try {
          password = (await readFile(passwordFile, 'utf8')).trim();
          ca = options.ca ? await readFile(options.ca) : undefined;
        } catch (error) {
          process.stderr.write(`outpost clips pull: ${describeError(error)}\n`);
          process.exitCode = ExitCode.CONFIG;
          return;
        }
        const tty = process.stderr.isTTY === true;
        const abort = new AbortController();
        process.once('SIGINT', () => abort.abort());
        process.once('SIGTERM', () => abort.abort());
        try {
          const result = await pullClips({
            url: options.url,
            username: options.username,
            password,
            ca,
            site: options.site,
            out: options.out,
            once: options.once === true,
            ...(options.timeout ? { timeoutMs: options.timeout * 1000 } : {}),
            signal: abort.signal,
            say: (line) => process.stdout.write(`${tty ? '\r\x1b[K' : ''}${line}\n`),
            progress: (line) => {
              if (tty) process.stderr.write(`\r\x1b[K${line.slice(0, (process.stderr.columns || 120) - 1)}`);
            },
          });
          if (tty) process.stderr.write('\n');
          process.exitCode = result.incomplete.length > 0 ? ExitCode.INTERNAL : ExitCode.OK;
        } catch (error) {
          process.stderr.write(`outpost clips pull: ${describeError(error)}\n`);
          process.exitCode = ExitCode.START_FAILED;
        }
      },
    );

  cli
    .command('version')
    .description('print the version')
    .action(() => {
      process.stdout.write(`outpost ${VERSION}\n`);
    });

  return cli;
}

/** The daemon's config for a tool on the box: --defaults, --config FILE, or the default file. */
async function configFor(options: { config?: string; defaults?: boolean }): Promise<Config | undefined> {
  try {
    return options.defaults ? embeddedDefaults() : await loadConfig(options.config ?? DEFAULT_CONFIG_PATH);
  } catch (error) {
    process.stderr.write(
      `${error instanceof ConfigError ? formatConfigError(error) : `outpost: ${describeError(error)}`}\n`,
    );
    process.exitCode = ExitCode.CONFIG;
    return undefined;
  }
}

try {
  await program().parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // --help and --version end here with exit code 0; usage mistakes with 2 (message already printed).
    process.exitCode = error.exitCode === 0 ? ExitCode.OK : ExitCode.CONFIG;
  } else {
    process.stderr.write(`outpost: ${describeError(error)}\n`);
    process.exitCode = ExitCode.INTERNAL;
  }
}
