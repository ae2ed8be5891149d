// What a command's verbs may ask of the process shell (cli.ts), which alone touches process-wide state
// (docs/architecture.md, "Dependency rules"): set the exit status, and wait for SIGTERM or SIGINT.
export interface CommandShell {
  setExitCode(code: number): void;
  /** Resolves at the first SIGTERM or SIGINT. */
  untilSignal(): Promise<void>;
}
