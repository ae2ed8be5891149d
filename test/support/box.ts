// Config files for the daemon (the built `outpost run`) in the end-to-end tests: a small test camera,
// and a camera box whose uplink is the test hub's TLS listener.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PEOPLE, SITE } from './broker.js';
import { testPki } from './pki.js';
import { freePort, freeUdpPortPair, tempDir, writeTemp } from './processes.js';

/** `cameras:` with one test camera (videotestsrc → x264enc, 320×240 at 15 fps), RTP to a free port pair. */
export async function testCameraYaml(): Promise<string> {
  const port = await freeUdpPortPair();
  return `cameras:\n  - name: cam0\n    width: 320\n    height: 240\n    framerate: 15\n    encoder: x264enc\n    rtp:\n      port: ${port}`;
}

/**
 * outpost.yaml of camera box `cam-a` (its uplink password written beside its data), uplink to the test
 * hub on `hubPort`; `sections` are the rest of the YAML (`cameras:`, `clips:`, …).
 */
export async function cameraBoxConfig(
  hubPort: number,
  sections: string[],
): Promise<{ file: string; dataDir: string }> {
  const dataDir = await tempDir('outpost-data-');
  const passwordFile = join(dataDir, 'uplink.password');
  await writeFile(passwordFile, `${PEOPLE['cam-a']?.password}\n`, { mode: 0o600 });
  const file = await writeTemp(
    'outpost.yaml',
    [
      `site: ${SITE}`,
      'device: cam-a',
      'role: camera',
      `dataDir: ${dataDir}`,
      `broker:\n  tcp:\n    port: ${await freePort()}`,
      ...sections,
      `uplink:\n  url: mqtts://127.0.0.1:${hubPort}\n  ca: ${testPki().ca}\n  username: cam-a\n  passwordFile: ${passwordFile}`,
    ].join('\n'),
  );
  return { file, dataDir };
}
