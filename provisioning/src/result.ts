// First boot's outcome for the status LED (docs/leds.md): under systemd (outpost-firstboot.service's
// RuntimeDirectory=, kept after it ends), a refusal is written to $RUNTIME_DIRECTORY/result.json, where
// the daemon, or outpost-firstboot-led.service on a box that has no configuration yet, finds the exit
// status and blinks its pattern. A successful run removes it. Outside systemd it does nothing.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from './files.js';

export const FIRSTBOOT_RESULT = 'result.json';

export interface FirstbootResult {
  /** The exit status (10–15 for a refused bundle). */
  exit: number;
  code: string;
  message: string;
  /** When, ms since the epoch. */
  at: number;
}

function resultFile(env: NodeJS.ProcessEnv): string | undefined {
  const runtime = env.RUNTIME_DIRECTORY?.split(':')[0];
  return runtime ? join(runtime, FIRSTBOOT_RESULT) : undefined;
}

export async function recordFirstbootResult(
  env: NodeJS.ProcessEnv,
  result: FirstbootResult | undefined,
): Promise<void> {
  const file = resultFile(env);
  if (!file) return;
  if (result === undefined) await rm(file, { force: true });
  else await writeFileAtomic(file, `${JSON.stringify(result)}\n`, 0o644);
}
