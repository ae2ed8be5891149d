// The verbs behind cmd/{verb}: each parses its arguments with its schema from the topic contract and
// refuses bad ones with BAD_ARGUMENTS naming the key, before it touches a camera or the panic path.
import { describe, expect, it } from 'vitest';
import { verbs, type VerbDeps } from '../../daemon/src/commands/verbs.js';
import { CommandError } from '../../daemon/src/errors.js';

function handlers() {
  const calls: string[] = [];
  const camera = {
    status: () => ({ state: 'streaming' }) as ReturnType<VerbDeps['cameras'][number]['camera']['status']>,
    start: () => {
      calls.push('start');
      return Promise.resolve();
    },
    stop: () => {
      calls.push('stop');
      return Promise.resolve();
    },
  };
  const deps: VerbDeps = {
    device: 'box1',
    cameras: [{ name: 'gate', camera }],
    preroll: { ring: () => undefined },
    panic: {
      recordingClips: () => ['c-recording'],
      trigger: (via, options = {}) => {
        calls.push(`trigger ${via} ${options.cameras?.join(',') ?? 'default'}`);
        return { clipId: 'c1', alertAt: 1, cameras: options.cameras ?? ['gate'] };
      },
    },
    delivery: {
      resend: (clipId) => Promise.reject(new Error(`no clip ${clipId} on this box (never made, or deleted)`)),
    },
  };
  return { verbs: verbs(deps), calls };
}

/** What `run` threw or rejected with (a verb may refuse before it returns its promise). */
async function refusal(run: () => Promise<unknown>): Promise<CommandError> {
  const error: unknown = await Promise.resolve()
    .then(run)
    .then(
      () => undefined,
      (error: unknown) => error,
    );
  expect(error).toBeInstanceOf(CommandError);
  return error as CommandError;
}

describe('cmd verbs', () => {
  it('ping and status take no arguments and ignore any given', async () => {
    const { verbs: v } = handlers();
    await expect(v.ping({ extra: 1 })).resolves.toMatchObject({ pong: true, device: 'box1' });
    await expect(v.status({ extra: 1 })).resolves.toEqual({
      cameras: [{ name: 'gate', state: 'streaming', preRoll: { bytes: 0, files: 0 } }],
    });
  });

  it('restart-camera needs a known camera: otherwise BAD_ARGUMENTS naming the cameras there are', async () => {
    const { verbs: v, calls } = handlers();
    expect((await refusal(() => v['restart-camera']({}))).message).toMatch(/^camera: /);
    const unknown = await refusal(() => v['restart-camera']({ camera: 'yard' }));
    expect(unknown).toMatchObject({ code: 'BAD_ARGUMENTS', message: 'no camera yard; cameras: gate' });
    expect(calls).toEqual([]);
    await expect(v['restart-camera']({ camera: 'gate' })).resolves.toEqual({
      camera: 'gate',
      state: 'streaming',
    });
    expect(calls).toEqual(['stop', 'start']);
  });

  it('clip passes its trigger and cameras to the panic path, and refuses unknown keys and cameras first', async () => {
    const { verbs: v, calls } = handlers();
    expect((await refusal(() => v.clip({ camera: 'gate' }))).code).toBe('BAD_ARGUMENTS');
    expect((await refusal(() => v.clip({ via: 'email' }))).message).toMatch(/^via: /);
    expect((await refusal(() => v.clip({ cameras: ['yard'] }))).message).toBe(
      'no camera yard; cameras: gate',
    );
    expect(calls).toEqual([]);
    await v.clip({});
    await v.clip({ via: 'cli', cameras: ['gate'] });
    expect(calls).toEqual(['trigger mqtt default', 'trigger cli gate']);
  });

  it('clip-chunks refuses a bad list and a clip this box does not have (BAD_ARGUMENTS), and says when a clip is still being recorded', async () => {
    const { verbs: v } = handlers();
    expect((await refusal(() => v['clip-chunks']({ clipId: 'c1', chunks: [-1] }))).message).toMatch(
      /^chunks\.0: /,
    );
    const recording = await refusal(() => v['clip-chunks']({ clipId: 'c-recording', chunks: [] }));
    expect(recording.code).toBe('FAILED');
    expect(recording.message).toMatch(/still being recorded/);
    const missing = await refusal(() => v['clip-chunks']({ clipId: 'c9', chunks: [] }));
    expect(missing.code).toBe('BAD_ARGUMENTS');
    expect(missing.message).toMatch(/^no clip c9/);
  });
});
