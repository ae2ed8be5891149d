// The verbs a console (or `outpost clip`) can send on `cmd/{verb}`: one handler each, built from one
// deps object. Arguments are parsed by the verb's schema in the topic contract (mqtt/contract.ts
// verbArgs), so docs/schemas/ describes them; mqtt/commands.ts carries the commands and the replies.
import type { z } from 'zod';
import type { Camera } from '../camera/camera.js';
import type { ClipDelivery } from '../clips/delivery.js';
import type { Panic } from '../clips/panic.js';
import type { PreRoll } from '../clips/preroll.js';
import { CommandError } from '../errors.js';
import type { Verb } from '../mqtt/commands.js';
import { verbArgs, type VerbName } from '../mqtt/contract.js';
import { VERSION } from '../version.js';

export interface VerbDeps {
  device: string;
  cameras: ReadonlyArray<{ name: string; camera: Pick<Camera, 'status' | 'start' | 'stop'> }>;
  /** The cameras' pre-roll rings: `status` reports what each costs in RAM. */
  preroll: Pick<PreRoll, 'ring'>;
  panic: Pick<Panic, 'trigger' | 'recordingClips'>;
  delivery: Pick<ClipDelivery, 'resend'>;
}

/** Parse a verb's arguments with its schema, turning problems into a BAD_ARGUMENTS reply. */
export function argsOf<T extends z.ZodType>(schema: T, args: Record<string, unknown>): z.output<T> {
  const parsed = schema.safeParse(args);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || 'args'}: ${issue.message}`);
  throw new CommandError('BAD_ARGUMENTS', problems.join('; '));
}

/** The handlers, by verb. */
export function verbs(deps: VerbDeps): Readonly<Record<VerbName, Verb>> {
  const byName = new Map(deps.cameras.map(({ name, camera }) => [name, camera]));
  const noSuchCamera = (names: string[]) =>
    new CommandError(
      'BAD_ARGUMENTS',
      `no camera ${names.join(', ')}; cameras: ${[...byName.keys()].join(', ')}`,
    );
  return {
    ping: () =>
      Promise.resolve({
        pong: true,
        device: deps.device,
        version: VERSION,
        uptimeSeconds: process.uptime(),
      }),
    status: () =>
      Promise.resolve({
        cameras: deps.cameras.map(({ name, camera }) => ({
          name,
          ...camera.status(),
          // The pre-roll ring's finished segments (tmpfs): what the clip buffer costs in RAM.
          preRoll: {
            bytes: deps.preroll.ring(name)?.bytes() ?? 0,
            files: deps.preroll.ring(name)?.files() ?? 0,
          },
        })),
      }),
    'restart-camera': async (args) => {
      const { camera: name } = argsOf(verbArgs['restart-camera'], args);
      const camera = byName.get(name);
      if (!camera) throw noSuchCamera([name]);
      await camera.stop();
      await camera.start();
      return { camera: name, state: camera.status().state };
    },
    // The alert goes out first, in the same call; the clip follows in the background.
    clip: (args) => {
      const { cameras: wanted, via } = argsOf(verbArgs.clip, args);
      const unknown = (wanted ?? []).filter((name) => !byName.has(name));
      if (unknown.length > 0) throw noSuchCamera(unknown);
      return Promise.resolve(deps.panic.trigger(via, { cameras: wanted }));
    },
    // The console missed chunks of a clip: publish them again (no chunks: the manifest again).
    'clip-chunks': async (args) => {
      const { clipId, chunks } = argsOf(verbArgs['clip-chunks'], args);
      // Asked before the clip is stored (a receiver waiting for its manifest): say so, not "no clip".
      if (deps.panic.recordingClips().includes(clipId))
        throw new CommandError(
          'FAILED',
          `clip ${clipId} is still being recorded; its manifest follows once it is stored`,
        );
      try {
        return await deps.delivery.resend(clipId, chunks);
      } catch (error) {
        throw new CommandError('BAD_ARGUMENTS', error instanceof Error ? error.message : String(error));
      }
    },
  };
}
