// Coded errors and exit codes: one place, so logs, CLI output and (later) MQTT error replies carry a
// stable code, and docs/operations.md can list every exit status the daemon uses.

/** Process exit statuses. Documented in docs/operations.md; systemd's unit keys off CONFIG. */
export const ExitCode = {
  /** Clean stop after SIGTERM/SIGINT, or a command that did what it was asked. */
  OK: 0,
  /** A bug or an error nothing expected; the log line before exit says what. */
  INTERNAL: 1,
  /** Bad command line or bad configuration: restarting will not help until a person fixes it. */
  CONFIG: 2,
  /** A subsystem could not start (port taken, GStreamer missing…); the log names it. */
  START_FAILED: 3,
  /** Stopping took longer than shutdown.timeoutMs; what did not stop in time was abandoned. */
  STOP_TIMEOUT: 4,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'CONFIG_UNREADABLE'
  | 'CONFIG_MISSING'
  | 'START_FAILED'
  | 'STOP_TIMEOUT'
  | 'PIPELINE_INVALID'
  | 'ENCODER_UNAVAILABLE'
  | 'CAMERA_WORKER_EXITED'
  | 'IDENTITIES_INVALID'
  | 'TLS_MATERIAL_INVALID'
  | 'SRTP_KEY_INVALID'
  | 'JANUS_REQUEST_FAILED'
  | 'GPIO_UNAVAILABLE'
  | 'CLIP_CAPTURE_FAILED'
  | 'CLIP_MISSING'
  // outpost-provision and first boot (docs/provisioning.md)
  | 'USAGE_INVALID'
  | 'SITE_MISSING'
  | 'SITE_INVALID'
  | 'SITE_CONFLICT'
  | 'BUNDLE_MALFORMED'
  | 'BUNDLE_SIGNATURE_INVALID'
  | 'BUNDLE_UNTRUSTED'
  | 'BUNDLE_CONTENT_INVALID'
  | 'INSTALL_FAILED'
  | 'BUNDLE_WIPE_FAILED'
  // camera sources and `outpost cameras`
  | 'SOURCE_UNAVAILABLE'
  | 'CAMERA_DEVICE_MISSING'
  | 'DEVICE_MONITOR_FAILED'
  // updates (docs/updates.md): a refused bundle, and what can go wrong installing one
  | 'UPDATE_BUNDLE_MALFORMED'
  | 'UPDATE_SIGNATURE_INVALID'
  | 'UPDATE_UNTRUSTED'
  | 'UPDATE_WRONG_ARCH'
  | 'UPDATE_INCOMPATIBLE'
  | 'UPDATE_OLDER'
  | 'UPDATE_INSTALL_FAILED'
  | 'UPDATE_BUSY'
  | 'UPDATE_UNSUPPORTED'
  | 'UPDATE_TRANSFER_FAILED'
  // `cmd` replies (mqtt/commands.ts; docs/topics.md)
  | CommandErrorCode;

/** The codes of a `cmd` error reply. */
export type CommandErrorCode = 'UNKNOWN_VERB' | 'BAD_COMMAND' | 'BAD_ARGUMENTS' | 'FAILED';

/** An error that names its problem and the fix. `code` is stable; `message` is for people. */
export class OutpostError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'OutpostError';
    this.code = code;
    this.hint = options.hint;
  }
}

/** A message for a person: the error's own words and, when it has one, the fix. */
export function describeError(error: unknown): string {
  if (error instanceof OutpostError) return error.hint ? `${error.message} (${error.hint})` : error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}

/** One problem in a config file, as `outpost check-config` and the daemon report it. */
export interface ConfigProblem {
  /** Key path as a person writes it: `cameras[0].rtp.port`; empty for the whole file. */
  path: string;
  /** 1-based line in the file, when the key or value can be found there. */
  line: number | undefined;
  /** The value found at that path (absent for missing keys). */
  value: unknown;
  message: string;
}

/** A config that does not validate: every problem found, not just the first (config/report.ts prints them). */
export class ConfigError extends OutpostError {
  readonly source: string;
  readonly problems: readonly ConfigProblem[];

  constructor(source: string, problems: readonly ConfigProblem[]) {
    const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
    super('CONFIG_INVALID', `${source}: ${count}`, {
      hint: 'fix each line listed, then run `outpost check-config FILE` again',
    });
    this.source = source;
    this.problems = problems;
  }
}

/** A refused or failed `cmd`: its code and message go into the error reply. */
export class CommandError extends OutpostError {
  declare readonly code: CommandErrorCode;

  constructor(code: CommandErrorCode, message: string) {
    super(code, message);
    this.name = 'CommandError';
  }
}
