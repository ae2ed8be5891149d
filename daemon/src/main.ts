// The process shell: config → app → signals → sd_notify → exit code. The only module that touches
// process-wide state; everything it runs is built by app.ts.
import { buildApp } from './app.js';
import { DEFAULT_CONFIG_PATH } from './config/load.js';
import { locateConfig } from './config/locate.js';
import { formatConfigError } from './config/report.js';
import type { Config } from './config/schema.js';
import { ConfigError, describeError, ExitCode, OutpostError } from './errors.js';
import { connectNotifier } from './lifecycle/sdnotify.js';
import { childTieProblem } from './lifecycle/tied-child.js';
import { createLogger } from './log.js';
import { VERSION } from './version.js';

export interface RunOptions {
  /** Config file; DEFAULT_CONFIG_PATH when absent (config/locate.ts). */
  configPath: string | undefined;
  /** A box provisioned under this folder (`firstboot --root`): its config, paths under it. */
  root?: string | undefined;
  /** Run on the embedded defaults (test camera, loopback broker) instead of a file. */
  defaults: boolean;
}

/** How often the STATUS= line is refreshed while running. */
const STATUS_INTERVAL_MS = 10_000;

export async function runDaemon(options: RunOptions): Promise<ExitCode> {
  let config: Config;
  let source: string;
  try {
    ({ config, source } = await locateConfig(
      { config: options.configPath, root: options.root, defaults: options.defaults },
      false,
    ));
  } catch (error) {
    reportConfigFailure(error, options);
    return ExitCode.CONFIG;
  }

  const log = createLogger(config.log.level);
  log.info({ version: VERSION, config: source }, 'outpost starting');
  const untied = childTieProblem();
  if (untied) log.warn({ reason: untied }, 'child processes are not tied to the daemon');
  const app = buildApp(config, log);
  const notifier = await connectNotifier(process.env, log, () => app.healthy());

  let signalled: (signal: NodeJS.Signals) => void = () => {};
  const stopRequested = new Promise<NodeJS.Signals>((resolve) => (signalled = resolve));
  let signals = 0;
  let firstSignalAt = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals === 1) {
      firstSignalAt = Date.now();
      log.info({ signal }, 'stopping');
      signalled(signal);
    } else if (Date.now() - firstSignalAt < 1000) {
      // The same Ctrl-C can arrive twice (the terminal, and a parent such as npm forwarding it).
      return;
    } else {
      log.error({ signal }, 'second signal: exiting without waiting for subsystems');
      process.exit(ExitCode.STOP_TIMEOUT);
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // systemctl reload / kill -HUP: re-read the identities file (a revoked device is dropped).
  process.on('SIGHUP', () => {
    log.info('SIGHUP: reloading');
    void app.reload();
  });
  process.on('uncaughtException', (error) => {
    log.fatal({ err: error }, 'uncaught exception; exiting so systemd restarts the daemon');
    process.exit(ExitCode.INTERNAL);
  });
  process.on('unhandledRejection', (reason) => {
    log.fatal({ err: reason }, 'unhandled promise rejection; exiting so systemd restarts the daemon');
    process.exit(ExitCode.INTERNAL);
  });

  notifier.status('starting');
  try {
    await Promise.race([
      app.start(),
      stopRequested.then(() => Promise.reject(new Error('stopped during start'))),
    ]);
  } catch (error) {
    log.error({ err: error, reason: describeError(error) }, 'outpost could not start');
    notifier.stopping(`failed: ${describeError(error)}`);
    await app.stop();
    notifier.close();
    return signals === 0 ? ExitCode.START_FAILED : ExitCode.OK;
  }

  let lastStatus = app.summary();
  notifier.ready(lastStatus);
  log.info({ status: lastStatus }, 'outpost running');
  const consoleUrl = app.console?.loginUrl() ?? app.console?.url();
  if (consoleUrl) {
    log.info(
      { url: consoleUrl, certificate: app.console?.devCaFile ?? 'the hub certificate' },
      `site console: open ${consoleUrl}`,
    );
  }
  const statusTimer = setInterval(() => {
    const status = app.summary();
    if (status === lastStatus) return;
    lastStatus = status;
    notifier.status(status);
    log.info({ status }, 'status');
  }, STATUS_INTERVAL_MS);

  await stopRequested;
  clearInterval(statusTimer);
  notifier.stopping('stopping');
  // Belt and braces: if a stop() ignores its own bound, still leave within the promise made to systemd.
  const hardExit = setTimeout(() => {
    log.error('shutdown overran its bound; exiting now');
    process.exit(ExitCode.STOP_TIMEOUT);
  }, config.shutdown.timeoutMs + 500);
  hardExit.unref();
  const clean = await app.stop();
  notifier.close();
  log.info({ clean }, 'outpost stopped');
  return clean ? ExitCode.OK : ExitCode.STOP_TIMEOUT;
}

function reportConfigFailure(error: unknown, options: RunOptions): void {
  // No config means no logger settings yet: plain lines on stderr, which journald keeps too.
  let text: string;
  if (error instanceof ConfigError) {
    text = formatConfigError(error);
  } else if (
    error instanceof OutpostError &&
    error.code === 'CONFIG_UNREADABLE' &&
    options.configPath === undefined &&
    options.root === undefined
  ) {
    text =
      `outpost: no config at ${DEFAULT_CONFIG_PATH}: provision the box, pass --config FILE (or --root DIR ` +
      'for a box provisioned under DIR), or run with --defaults (test camera, broker on loopback)';
  } else {
    text = `outpost: ${describeError(error)}`;
  }
  process.stderr.write(`${text}\n`);
}
