// A provisioned site for provisioning tests: site directory with a hub and a camera, and their bundles.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describeError } from '../../daemon/src/errors.js';
import { makeBundle, signBundle, type BundleEnvelope } from '../../provisioning/src/bundle.js';
import { addIdentity, initSite } from '../../provisioning/src/site.js';
import { REPO, tempDir } from './processes.js';

export interface TestSite {
  dir: string;
  hubBundle: string;
  cameraBundle: string;
}

export async function provisionedSite(site = 'plant-7'): Promise<TestSite> {
  const dir = join(await tempDir('outpost-site-'), site);
  await initSite(dir, { site, hubHost: 'hub.plant.lan', hubIp: '192.168.10.2' });
  await addIdentity(dir, { name: 'cam-north', kind: 'camera', cameras: ['cam0', 'cam1'], cert: true });
  return { dir, hubBundle: await makeBundle(dir, 'hub'), cameraBundle: await makeBundle(dir, 'cam-north') };
}

/** The refusal a person sees: message and fix (describeError), for matching in one go. */
export async function refusal(promise: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (error) {
    return describeError(error);
  }
  throw new Error('expected a refusal');
}

interface Envelope {
  files: Array<{ path: string; mode: string; base64: string }>;
  [key: string]: unknown;
}

/** The bundle with one byte of one file's content flipped (still valid base64 and JSON). */
export function flipOneByte(bundle: string, path = '/etc/outpost/outpost.yaml'): string {
  const envelope = JSON.parse(bundle) as Envelope;
  const file = envelope.files.find((f) => f.path === path)!;
  const content = Buffer.from(file.base64, 'base64');
  content[content.length - 2] = (content[content.length - 2] ?? 0) ^ 0x01;
  file.base64 = content.toString('base64');
  return JSON.stringify(envelope);
}

/** The bundle changed by `change` and signed again by the site CA: authentic, but with bad content. */
export function resign(bundle: string, caKeyPem: string, change: (envelope: BundleEnvelope) => void): string {
  const envelope = JSON.parse(bundle) as BundleEnvelope;
  change(envelope);
  const unsigned: Omit<BundleEnvelope, 'signature'> & { signature?: string } = envelope;
  delete unsigned.signature;
  return signBundle(unsigned, caKeyPem);
}

const CLI = join(REPO, 'dist/provisioning/src/cli.js');

/** The built `outpost-provision` with `args`, as a tech runs it: exit status, output and wall time. */
export function provision(...args: string[]): {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
} {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
  const started = performance.now();
  const result = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30_000 });
  return {
    code: result.status,
    stdout: result.stdout,
    stderr: result.stderr,
    ms: performance.now() - started,
  };
}
