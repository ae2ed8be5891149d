// bench/telemetry — what one telemetry sample costs on this box: wall time of readMachine() (p50, p95,
// max over N samples after the 500 ms CPU-load baseline) and the longest event-loop stall seen
// meanwhile, beside the same reads done through systeminformation's own helpers (cpuTemperature,
// fsSize, networkStats), which spawn processes. Prints one real sample, then one line of JSON.
//
//   npm run build && node dist/bench/telemetry.js [--samples 10] [--dataDir /var/lib/outpost]
import { tmpdir } from 'node:os';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import si from 'systeminformation';
import { readMachine } from '../daemon/src/telemetry/sampler.js';

const arg = (name: string): string | undefined => {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? process.argv[at + 1] : undefined;
};
const samples = Number(arg('samples')) || 10;
const dataDir = arg('dataDir') ?? tmpdir();

async function measure(
  read: () => Promise<unknown>,
): Promise<{ p50: number; p95: number; max: number; stall: number }> {
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const times: number[] = [];
  for (let i = 0; i < samples; i += 1) {
    const began = performance.now();
    await read();
    times.push(performance.now() - began);
    // Let the loop monitor see a turn between samples, like the interval would.
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  loop.disable();
  times.sort((a, b) => a - b);
  const at = (q: number) => round(times[Math.min(times.length - 1, Math.floor(q * times.length))] ?? NaN);
  return { p50: at(0.5), p95: at(0.95), max: at(1), stall: round(loop.max / 1e6) };
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

const sample = await readMachine(dataDir); // also primes the CPU-load baseline (500 ms)
console.log(JSON.stringify(sample, null, 2));
const ours = await measure(() => readMachine(dataDir));
const viaSi = await measure(() =>
  Promise.all([si.currentLoad(), si.mem(), si.cpuTemperature(), si.fsSize(), si.networkStats('*')]),
);
console.log(
  `readMachine              p50 ${ours.p50} ms  p95 ${ours.p95} ms  max ${ours.max} ms  loop stall ${ours.stall} ms`,
);
console.log(
  `systeminformation only   p50 ${viaSi.p50} ms  p95 ${viaSi.p95} ms  max ${viaSi.max} ms  loop stall ${viaSi.stall} ms`,
);
console.log(JSON.stringify({ samples, readMachine: ours, systeminformation: viaSi }));
