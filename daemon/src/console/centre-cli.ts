// `outpost centre …`: the operations centre's verbs. The console's server (centre-console.ts) is loaded
// only when the verb runs, so the other verbs of `outpost` do not load it.
import type { Command } from 'commander';
import { loadConfigWith } from '../config/load.js';
import { formatConfigError } from '../config/report.js';
import { centreConsoleSchema, type CentreConsoleConfig } from '../config/schema.js';
import { ConfigError, describeError, ExitCode, OutpostError } from '../errors.js';
import type { CommandShell } from '../lifecycle/shell.js';
import { createLogger } from '../log.js';
import type { ConsoleServer } from './server.js';

/** `outpost centre console`: serve the centre's console until SIGTERM or SIGINT. */
export function registerCentreCommands(cli: Command, shell: CommandShell): void {
  const centre = cli
    .command('centre')
    .description("the operations centre's side (docs/console.md, docs/bridge.md)");
  centre
    .command('console')
    .description("serve the console at the operations centre: every site, through the centre's broker")
    .requiredOption(
      '-c, --config <file>',
      'its config file (outpost-provision centre init writes CENTRE/console/console.yaml)',
    )
    .action(async (options: { config: string }) => {
      let config: CentreConsoleConfig;
      try {
        config = await loadConfigWith(centreConsoleSchema, options.config);
      } catch (error) {
        process.stderr.write(
          `${error instanceof ConfigError ? formatConfigError(error) : `outpost centre console: ${describeError(error)}`}\n`,
        );
        shell.setExitCode(ExitCode.CONFIG);
        return;
      }
      const log = createLogger(config.log.level);
      let server: ConsoleServer;
      try {
        const { centreConsole } = await import('./centre-console.js');
        server = await centreConsole(config, log);
        await server.start();
      } catch (error) {
        log.fatal({ err: error }, `centre console not started: ${describeError(error)}`);
        shell.setExitCode(
          error instanceof OutpostError && error.code === 'TLS_MATERIAL_INVALID'
            ? ExitCode.CONFIG
            : ExitCode.START_FAILED,
        );
        return;
      }
      log.info(
        { url: server.url(), centralBroker: config.centralBroker.url },
        `centre console: open ${server.url() ?? ''}`,
      );
      await shell.untilSignal();
      await server.stop();
    });
}
