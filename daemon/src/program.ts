// The conventions both command-line tools (`outpost`, `outpost-provision`) share: -V for the version,
// usage after an error, and errors thrown to the caller (which maps them to exit statuses).
import { Command } from 'commander';
import { VERSION } from './version.js';

export function program(name: string, description: string): Command {
  return new Command(name)
    .description(description)
    .version(VERSION, '-V, --version', 'print the version and exit')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
}
