// Starts Debian's Janus (/usr/bin/janus) for a test: a temp config folder with only the streaming plugin
// and only the HTTP transport on 127.0.0.1, ICE on loopback, no default mountpoints. `restart()` brings
// it back on the same port, which is how the tests play a Janus restart on the site.
import { spawn, type ChildProcess } from 'node:child_process';
import { janusLibDir, writeJanusConfig } from '../../daemon/src/camera/janus-process.js';
import { stopChild } from '../../daemon/src/lifecycle/stop-child.js';
import { freePort, tempDir } from './processes.js';

export interface JanusOptions {
  apiSecret?: string;
  adminKey?: string;
}

export interface TestJanus {
  url: string;
  port: number;
  /** Everything Janus printed, for failure messages and log assertions. */
  output(): string;
  start(): Promise<void>;
  stop(): Promise<void>;
  restart(): Promise<void>;
}

export async function janusServer(options: JanusOptions = {}): Promise<TestJanus> {
  const dir = await tempDir('outpost-janus-');
  const port = await freePort();
  const lib = janusLibDir();
  if (!lib) throw new Error('Janus is not installed (no libjanus_streaming.so under /usr/lib)');
  // No mountpoints of its own: only what the daemon creates. -d 4 (below): info, for log assertions.
  await writeJanusConfig(dir, {
    lib,
    host: '127.0.0.1',
    port,
    basePath: '/janus',
    debugLevel: 4,
    ...options,
  });

  const url = `http://127.0.0.1:${port}/janus`;
  let child: ChildProcess | undefined;
  let output = '';

  const stop = async (): Promise<void> => {
    const running = child;
    child = undefined;
    if (running) await stopChild(running, { graceMs: 5000 });
  };

  const start = async (): Promise<void> => {
    // -o: no colours; -d 4: info, which includes "SRTP unprotect error" lines.
    const started = spawn('janus', ['-F', dir, '-o', '-d', '4'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = started;
    started.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    started.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (started.exitCode !== null) throw new Error(`janus exited (${started.exitCode}):\n${output}`);
      try {
        const response = await fetch(`${url}/info`, { signal: AbortSignal.timeout(1000) });
        if (response.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`janus did not answer on ${url} within 15 s:\n${output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  await start();
  return {
    url,
    port,
    output: () => output,
    start,
    stop,
    async restart() {
      await stop();
      await start();
    },
  };
}
