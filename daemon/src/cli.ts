#!/usr/bin/env node
// The `outpost` command. Parses arguments (commander) and calls into the rooms; it holds no logic of
// its own. Exit statuses are ExitCode (docs/operations.md): 2 for any usage or config mistake.
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { stringify } from 'yaml';
import { findCameras, formatCameraList } from './camera/devices.js';
import { Encoders } from './camera/encoders.js';
import { sourceProblems } from './camera/sources.js';
import { DEFAULT_CONFIG_PATH, loadConfig, redactSecrets } from './config/load.js';
import { askDaemonForClip } from './clips/ask.js';
import { pullClips } from './clips/pull.js';
import { locateConfig, type ConfigChoice } from './config/locate.js';
import type { Config } from './config/schema.js';
import { formatConfigError } from './config/report.js';
import { sendChat, tailChat } from './chat/tool.js';
import { ConfigError, describeError, ExitCode, OutpostError } from './errors.js';
import { createLogger } from './log.js';
import {
  brokerTarget,
  connectTool,
  type BrokerTarget,
  type ToolConnection,
  type ToolOptions,
} from './mqtt/tool-client.js';
import { registerUpdateCommands } from './update/cli.js';
import { registerLedCommands } from './gpio/led-cli.js';
import { registerCentreCommands } from './console/centre-cli.js';
import { program } from './program.js';
import { VERSION } from './version.js';

function commands(): Command {
  const cli = program(
    'outpost',
    'Outpost edge appliance daemon: cameras to the site SFU, embedded MQTT broker',
  );

  cli
    .command('run')
    .description('run the daemon in the foreground (systemd starts it this way)')
    .addOption(
      new Option('-c, --config <file>', `config file (default: ${DEFAULT_CONFIG_PATH})`).conflicts(
        'defaults',
      ),
    )
    .addOption(
      new Option(
        '--root <dir>',
        'run a box provisioned under DIR (firstboot --root DIR): DIR/etc/outpost/outpost.yaml, its paths under DIR',
      ).conflicts(['config', 'defaults']),
    )
    .option('--defaults', 'run on the embedded defaults: one test-pattern camera, broker on 127.0.0.1')
    .action(async (options: { config?: string; root?: string; defaults?: boolean }) => {
      // Loaded here, not at the top: the other verbs must not load the broker, cameras and the rest.
      const { runDaemon } = await import('./main.js');
      const code = await runDaemon({
        configPath: options.config,
        root: options.root,
        defaults: options.defaults === true,
      });
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
        // Beyond the file itself: a camera device that is not on this box (run would start without it).
        const problems = sourceProblems(config);
        if (problems.length > 0) throw new ConfigError(file, problems);
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

  const chat = cli.command('chat').description('send and read chat messages on the site');
  withBroker(
    chat
      .command('send')
      .description('send one message to a channel (the broker stamps you as the sender)')
      .argument('<channel>', 'channel name, e.g. ops')
      .argument('<text>', 'the message (at most 2 KiB)'),
  ).action(async (channel: string, text: string, options: ToolOptions) => {
    checkChannel(channel);
    await withConnection(options, (connection) => sendChat(connection, channel, text));
  });
  withBroker(
    chat
      .command('tail')
      .description("print a channel's recent history, then new messages as they arrive")
      .argument('<channel>', 'channel name, e.g. ops')
      .option('-n, --count <n>', 'exit after this many messages', positiveInt)
      .option('--timeout <seconds>', 'exit after this many seconds', positiveInt),
  ).action(async (channel: string, options: ToolOptions & { count?: number; timeout?: number }) => {
    checkChannel(channel);
    await withConnection(options, (connection) =>
      tailChat(connection, channel, {
        count: options.count,
        timeoutMs: options.timeout === undefined ? undefined : options.timeout * 1000,
        write: (line) => process.stdout.write(`${line}\n`),
      }),
    );
  });

  cli
    .command('cameras')
    .description(
      'list the cameras GStreamer finds (with the source config for each) and the usable H.264 encoders',
    )
    .option('--json', 'print one JSON object instead of text')
    .action(async (options: { json?: boolean }) => {
      const encoders = new Encoders(createLogger('silent', false));
      // The probe throws when no encoder is usable; its report still says why, which is the point here.
      const [found, probe] = await Promise.allSettled([findCameras(), encoders.start()]);
      if (found.status === 'rejected') {
        process.stderr.write(`outpost: ${describeError(found.reason)}\n`);
        process.exitCode = ExitCode.START_FAILED;
        return;
      }
      if (probe.status === 'rejected' && encoders.report().length === 0) {
        process.stderr.write(`outpost: ${describeError(probe.reason)}\n`);
        process.exitCode = ExitCode.START_FAILED;
        return;
      }
      process.stdout.write(
        options.json
          ? `${JSON.stringify({ cameras: found.value, encoders: encoders.report() })}\n`
          : formatCameraList(found.value, encoders.report()),
      );
      process.exitCode = ExitCode.OK;
    });

  withDaemon(
    cli
      .command('clip')
      .description("ask this box's running daemon for a panic clip: the alert goes out at once"),
  )
    .option('--camera <name...>', 'cameras in the clip (default: clips.cameras, or every camera)')
    .action(async (options: ConfigChoice & { camera?: string[] }) => {
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

  withBroker(
    cli
      .command('clips')
      .description('panic clips, console side')
      .command('pull')
      .description(
        'receive alerts and clips from the site (persistent session), verify sha256, write MP4s; ' +
          "this box's broker by default, or --url",
      ),
  )
    .requiredOption('-o, --out <dir>', 'where clips are written: DIR/{device}/{clipId}.mp4')
    .option('--once', 'exit after the first verified clip')
    .option('--timeout <seconds>', 'exit after this many seconds', (value) => Number(value))
    .action(async (options: ToolOptions & { out: string; once?: boolean; timeout?: number }) => {
      let target: BrokerTarget;
      try {
        target = await brokerTarget(options);
      } catch (error) {
        process.stderr.write(`outpost clips pull: ${describeError(error)}\n`);
        process.exitCode =
          error instanceof OutpostError && error.code === 'START_FAILED'
            ? ExitCode.START_FAILED
            : ExitCode.CONFIG;
        return;
      }
      const tty = process.stderr.isTTY === true;
      const abort = new AbortController();
      process.once('SIGINT', () => abort.abort());
      process.once('SIGTERM', () => abort.abort());
      try {
        const result = await pullClips({
          url: target.url,
          username: target.username,
          password: target.password,
          ca: target.ca === undefined ? undefined : Buffer.from(target.ca),
          site: target.site,
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
    });

  const shell = {
    setExitCode: (code: number) => void (process.exitCode = code),
    untilSignal: () =>
      new Promise<void>((resolve) => {
        process.once('SIGTERM', () => resolve());
        process.once('SIGINT', () => resolve());
      }),
  };
  registerUpdateCommands(cli, shell);
  registerLedCommands(cli, shell);
  registerCentreCommands(cli, shell);

  cli
    .command('version')
    .description('print the version')
    .action(() => {
      process.stdout.write(`outpost ${VERSION}\n`);
    });

  return cli;
}

/**
 * How a tool finds the running daemon on this box (config/locate.ts): --config FILE, --root DIR or
 * --defaults; with none, /etc/outpost/outpost.yaml if it exists, else the embedded defaults.
 */
function withDaemon(command: Command): Command {
  return command
    .addOption(
      new Option(
        '-c, --config <file>',
        `the daemon's config file (default: ${DEFAULT_CONFIG_PATH} if it exists, else the embedded defaults)`,
      ).conflicts(['defaults', 'root']),
    )
    .addOption(
      new Option(
        '--root <dir>',
        'the daemon of a box provisioned under DIR (outpost run --root DIR)',
      ).conflicts('defaults'),
    )
    .option('--defaults', 'the daemon started on the embedded defaults (outpost run --defaults, npm start)');
}

/** Options every MQTT verb takes: the box's own broker (the daemon found as above) or a remote one. */
function withBroker(command: Command): Command {
  return withDaemon(command)
    .option('--url <url>', 'a remote broker instead, e.g. mqtts://hub.plant.lan:8883')
    .option('--username <name>', 'with --url: your identity')
    .option('--password-file <file>', 'with --url: file holding your password')
    .option('--ca <file>', 'with --url mqtts://: the site CA certificate')
    .option('--site <name>', 'with --url: the site name');
}

async function withConnection<T>(
  options: ToolOptions,
  use: (connection: ToolConnection) => Promise<T>,
): Promise<T> {
  const connection = await connectTool(options);
  try {
    return await use(connection);
  } finally {
    await connection.client.endAsync();
  }
}

function checkChannel(channel: string): void {
  if (!/^[a-z0-9][a-z0-9-]{0,31}$/.test(channel)) {
    throw new OutpostError('USAGE_INVALID', `bad channel name ${JSON.stringify(channel)}`, {
      hint: 'use 1–32 lowercase letters, digits or "-"',
    });
  }
}

function positiveInt(value: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) throw new InvalidArgumentError('give a whole number ≥ 1');
  return number;
}

/** The daemon's config for a tool on the box, by the one rule (config/locate.ts). */
async function configFor(options: ConfigChoice): Promise<Config | undefined> {
  try {
    return (await locateConfig(options, true)).config;
  } catch (error) {
    process.stderr.write(
      `${error instanceof ConfigError ? formatConfigError(error) : `outpost: ${describeError(error)}`}\n`,
    );
    process.exitCode = ExitCode.CONFIG;
    return undefined;
  }
}

try {
  await commands().parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // --help and --version end here with exit code 0; usage mistakes with 2 (message already printed).
    process.exitCode = error.exitCode === 0 ? ExitCode.OK : ExitCode.CONFIG;
  } else if (error instanceof OutpostError) {
    process.stderr.write(`outpost: ${describeError(error)}\n`);
    process.exitCode =
      error.code === 'USAGE_INVALID' || error.code.startsWith('CONFIG')
        ? ExitCode.CONFIG
        : ExitCode.START_FAILED;
  } else {
    process.stderr.write(`outpost: ${describeError(error)}\n`);
    process.exitCode = ExitCode.INTERNAL;
  }
}
