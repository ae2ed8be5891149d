// Smoke test of bench:latency's harness, short: 100 stamped frames per phase through the real daemon
// and the bare sender, into headless Chromium (through Janus) and into the GStreamer receiver. It
// checks that frames were decoded and their stamps read, and that every latency is positive and
// finite. The targets themselves (p95 and the daemon/bare ratio) belong to the benchmark, not here.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO, requireBuilt, tempDir } from '../support/processes.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

function runBench(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(REPO, 'dist/bench/latency/run.js'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('bench:latency harness', () => {
  it('measures 100 stamped frames per path: browser via Janus and GStreamer, daemon and bare', async () => {
    requireBuilt();
    const out = await tempDir('outpost-latency-smoke-');
    dirs.push(out);
    const { code, stdout, stderr } = await runBench(['--frames', '100', '--no-cost', '--out', out]);
    expect(code, `${stdout}\n${stderr}`).toBe(0);
    const summary = JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<
      string,
      { frames: number; p50: number; p95: number; max: number }
    >;
    for (const path of ['browser', 'gstreamer', 'bareBrowser', 'bareGstreamer']) {
      expect(summary[path]!.frames, path).toBeGreaterThanOrEqual(100);
      expect(summary[path]!.p50, path).toBeGreaterThan(0);
      expect(Number.isFinite(summary[path]!.max), path).toBe(true);
    }
    const saved = JSON.parse(await readFile(join(out, 'latency.json'), 'utf8')) as {
      latencies: Record<string, number[]>;
    };
    const phases = Object.values(saved.latencies);
    // Four phases, and the two browser phases also timed at the frame's hand-over to the compositor.
    expect(phases).toHaveLength(6);
    for (const latencies of phases) {
      expect(latencies.length).toBeGreaterThanOrEqual(100);
      expect(latencies.every((ms) => Number.isFinite(ms) && ms > 0)).toBe(true);
    }
    expect(existsSync(join(out, 'latency-cdf.png'))).toBe(true);
  }, 120_000);
});
