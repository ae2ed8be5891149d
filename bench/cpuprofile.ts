// The top entries of a V8 CPU profile (`node --cpu-prof`, e.g. from `bench:broker -- --cpu-prof DIR`):
// self time by function and by package, as shares of the time the process was busy (the profile's
// `(idle)` samples left out). For reading where a process spends its CPU without opening DevTools.
//
//   npm run build && node dist/bench/cpuprofile.js FILE.cpuprofile [--top 25]
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const file = process.argv[2];
if (!file) {
  console.error('usage: node dist/bench/cpuprofile.js FILE.cpuprofile [--top N]');
  process.exit(2);
}
const topIndex = process.argv.indexOf('--top');
const TOP = topIndex > 0 ? Number(process.argv[topIndex + 1]) || 25 : 25;

const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
// Self time per node: the time deltas of the samples taken in it.
const selfUs = new Map<number, number>();
profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const idleIds = new Set(
  profile.nodes.filter((node) => node.callFrame.functionName === '(idle)').map((n) => n.id),
);
const sampled = [...selfUs.values()].reduce((a, b) => a + b, 0);
const total = [...selfUs].filter(([id]) => !idleIds.has(id)).reduce((a, [, us]) => a + us, 0);

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

const print = (title: string, entries: Map<string, number>): void => {
  console.log(`\n${title}`);
  for (const [key, us] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
    console.log(`${((us / total) * 100).toFixed(1).padStart(5)} %  ${key}`);
  }
};
console.log(
  `${file}: ${(sampled / 1e6).toFixed(1)} s sampled, ${(total / 1e6).toFixed(1)} s busy (shares below)`,
);
print('self time by function', byFunction);
print('self time by package or file', byPackage);
