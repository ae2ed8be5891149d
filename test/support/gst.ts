// Run a pipeline description the way the daemon's workers do (gst_parse_launch through
// gstreamer-superficial), in a node process of its own, for tests that need GStreamer's own parser.
import { spawnSync } from 'node:child_process';
import { REPO } from './processes.js';

/**
 * Parse and run a description the way the camera worker does (gst_parse_launch through
 * gstreamer-superficial; gst-launch-1.0 would re-quote its arguments), until EOS. Prints the names of
 * the pipeline's elements that the caller asks about and can find.
 */
export function parseAndRun(description: string, lookFor: string[] = [], playMs = 0) {
  const script = `
    const { createRequire } = await import('node:module');
    const gst = createRequire(process.cwd() + '/')('gstreamer-superficial');
    const [description, playMs, ...names] = process.argv.slice(1);
    const pipeline = new gst.Pipeline(description);
    for (const name of names.filter((n) => !n.includes('.'))) if (pipeline.findChild(name)) console.log('found ' + name);
    // \`element.property\`: the value once the pipeline has played for playMs.
    const values = () => {
      for (const name of names.filter((n) => n.includes('.'))) {
        const [element, property] = name.split('.');
        console.log(name + '=' + pipeline.findChild(element)?.[property]);
      }
    };
    pipeline.pollBus((m) => {
      if (m.type === 'eos') { pipeline.stop(); process.exit(0); }
      if (m.type === 'error') { console.error(m.message); process.exit(1); }
    });
    pipeline.play();
    // A live pipeline without an end: playing this long without an error is the pass.
    if (Number(playMs) > 0) setTimeout(() => { values(); pipeline.stop(); process.exit(0); }, Number(playMs));`;
  return spawnSync(
    process.execPath,
    ['--input-type=module', '-e', script, description, String(playMs), ...lookFor],
    {
      encoding: 'utf8',
      timeout: 20_000,
      cwd: REPO,
    },
  );
}
