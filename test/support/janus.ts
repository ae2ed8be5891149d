// Starts Debian's Janus (/usr/bin/janus) for a test: a temp config folder with only the streaming plugin
// and only the HTTP transport on 127.0.0.1, ICE on loopback, no default mountpoints. `restart()` brings
// it back on the same port, which is how the tests play a Janus restart on the site.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, tempDir } from './processes.js';

const LIB = '/usr/lib/x86_64-linux-gnu/janus';
const PLUGINS = `${LIB}/plugins`;
const TRANSPORTS = `${LIB}/transports`;

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

/** `.so` files in `folder` except `keep`: Janus loads everything it is not told to `disable`. */
function allBut(folder: string, keep: string): string {
  return readdirSync(folder)
    .filter((file) => file.endsWith('.so') && file !== keep)
    .join(',');
}

export async function janusServer(options: JanusOptions = {}): Promise<TestJanus> {
  const dir = await tempDir('outpost-janus-');
  const port = await freePort();
  await writeFile(
    join(dir, 'janus.jcfg'),
    `general: {
  configs_folder = "${dir}"
  plugins_folder = "${PLUGINS}"
  transports_folder = "${TRANSPORTS}"
  events_folder = "${LIB}/events"
  loggers_folder = "${LIB}/loggers"
  debug_level = 4
  ${options.apiSecret ? `api_secret = "${options.apiSecret}"` : ''}
}
certificates: {}
media: {}
nat: { ice_enforce_list = "lo" }
plugins: { disable = "${allBut(PLUGINS, 'libjanus_streaming.so')}" }
transports: { disable = "${allBut(TRANSPORTS, 'libjanus_http.so')}" }
loggers: { disable = "libjanus_jsonlog.so" }
events: { broadcast = false }
`,
  );
  await writeFile(
    join(dir, 'janus.transport.http.jcfg'),
    `general: { json = "plain", base_path = "/janus", http = true, port = ${port}, ip = "127.0.0.1", https = false }
admin: { admin_http = false, admin_https = false }
`,
  );
  // No mountpoints of its own: only what the daemon creates.
  await writeFile(
    join(dir, 'janus.plugin.streaming.jcfg'),
    `general: { ${options.adminKey ? `admin_key = "${options.adminKey}"` : ''} }\n`,
  );

  const url = `http://127.0.0.1:${port}/janus`;
  let child: ChildProcess | undefined;
  let output = '';

  const stop = async (): Promise<void> => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()));
    running.kill('SIGTERM');
    const timer = setTimeout(() => running.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
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
