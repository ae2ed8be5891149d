// The top entries of a V8 CPU profile (`node --cpu-prof`, e.g. from `bench:broker -- --cpu-prof DIR`):
// self time by function and by package, as shares of the time the process was busy (the profile's
// `(idle)` samples left out). For reading where a process spends its CPU without opening DevTools.
// With `--phases FILE` (bench:broker writes DIR/phases.json: each phase's start and end on the profile's
// clock), the same for each phase's window alone, so connecting and logging in stay out of a phase's list.
//
//   npm run build && node dist/bench/cpuprofile.js FILE.cpuprofile [--top 25] [--phases DIR/phases.json]
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

const file = process.argv[2];
if (!file) {
  console.error('usage: node dist/bench/cpuprofile.js FILE.cpuprofile [--top N] [--phases FILE]');
  process.exit(2);
}
const option = (name: string): string | undefined => {
  const index = process.argv.indexOf(name);
  return index > 0 ? process.argv[index + 1] : undefined;
};
const TOP = Number(option('--top')) || 25;
const phasesFile = option('--phases');

const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const idleIds = new Set(
  profile.nodes.filter((node) => node.callFrame.functionName === '(idle)').map((n) => n.id),
);

/** `node_modules/NAME` (or `@scope/NAME`), `node:` internals, our own files, or V8's pseudo-frames. */
function packageOf(url: string, name: string): string {
  if (!url) return `(${name || 'native'})`;
  const modules = url.lastIndexOf('node_modules/');
  if (modules >= 0) {
    const rest = url.slice(modules + 'node_modules/'.length).split('/');
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? url);
  }
  if (url.startsWith('node:')) return url;
  const dist = url.indexOf('/dist/');
  return dist >= 0 ? url.slice(dist + '/dist/'.length) : url;
}

/** Self time per node over the samples taken in [from, to) (µs on the profile's clock). */
function selfTimes(from: number, to: number): Map<number, number> {
  const selfUs = new Map<number, number>();
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (at >= from && at < to) selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  });
  return selfUs;
}

function report(title: string, selfUs: Map<number, number>): void {
  const sampled = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const total = [...selfUs].filter(([id]) => !idleIds.has(id)).reduce((a, [, us]) => a + us, 0);
  const byFunction = new Map<string, number>();
  const byPackage = new Map<string, number>();
  for (const [id, us] of selfUs) {
    if (idleIds.has(id)) continue;
    const frame = byId.get(id)?.callFrame;
    if (!frame) continue;
    const where = packageOf(frame.url, frame.functionName);
    const key = `${frame.functionName || '(anonymous)'}  ${where}${frame.url ? `:${frame.lineNumber + 1}` : ''}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + us);
    byPackage.set(where, (byPackage.get(where) ?? 0) + us);
  }
  const print = (heading: string, entries: Map<string, number>): void => {
    console.log(`\n${heading}`);
    for (const [key, us] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
      console.log(`${((us / total) * 100).toFixed(1).padStart(5)} %  ${key}`);
    }
  };
  console.log(
    `\n== ${title}: ${(sampled / 1e6).toFixed(1)} s sampled, ${(total / 1e6).toFixed(1)} s busy (shares below)`,
  );
  print('self time by function', byFunction);
  print('self time by package or file', byPackage);
}

if (phasesFile) {
  const phases = JSON.parse(readFileSync(phasesFile, 'utf8')) as Record<string, [number, number]>;
  for (const [phase, [from, to]] of Object.entries(phases)) report(`${file}, ${phase}`, selfTimes(from, to));
} else {
  report(file, selfTimes(-Infinity, Infinity));
}
