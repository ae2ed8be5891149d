// `sfu.janus.launch`: a Janus of the daemon's own, for a development box and `--defaults`, so that the
// first command of the README ends with a camera playing in the console. Debian's `janus` runs with a
// config generated under dataDir/janus: only the streaming plugin and the HTTP transport, the HTTP API
// on the loopback address of sfu.janus.url, ICE on loopback, no mountpoints of its own (the daemon
// makes them: camera/janus.ts). It is restarted with backoff when it exits, and stopped with the
// daemon (SIGTERM, then SIGKILL after 3 s). When a Janus already answers on that URL (Debian's own
// service), that one is used and none is launched.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { OutpostError } from '../errors.js';
import type { Service } from '../lifecycle/service.js';
import { stopChild } from '../lifecycle/stop-child.js';
import { tiedToParent } from '../lifecycle/tied-child.js';

const START_WAIT_MS = 10_000;

/** Debian installs the plugins under /usr/lib/<multiarch triplet>/janus. */
export function janusLibDir(): string | undefined {
  for (const entry of existsSync('/usr/lib') ? readdirSync('/usr/lib') : []) {
    const dir = join('/usr/lib', entry, 'janus');
    if (existsSync(join(dir, 'plugins', 'libjanus_streaming.so'))) return dir;
  }
  return undefined;
}

/** `.so` files in `folder` except `keep`: Janus loads everything it is not told to `disable`. */
function allBut(folder: string, keep: string): string {
  return readdirSync(folder)
    .filter((file) => file.endsWith('.so') && file !== keep)
    .join(',');
}

export interface JanusConfig {
  /** Where Debian installed Janus's modules (janusLibDir()). */
  lib: string;
  host: string;
  port: number;
  basePath: string;
  debugLevel: number;
  apiSecret?: string;
  /** The streaming plugin's admin key, which guards creating mountpoints. */
  adminKey?: string;
}

/**
 * A Janus config folder: only the streaming plugin and the HTTP transport (on `host`:`port`), ICE on
 * loopback, no mountpoints of its own.
 */
export async function writeJanusConfig(dir: string, config: JanusConfig): Promise<void> {
  const { lib } = config;
  await writeFile(
    join(dir, 'janus.jcfg'),
    `general: {
  configs_folder = "${dir}"
  plugins_folder = "${lib}/plugins"
  transports_folder = "${lib}/transports"
  events_folder = "${lib}/events"
  loggers_folder = "${lib}/loggers"
  debug_level = ${config.debugLevel}
  ${config.apiSecret ? `api_secret = "${config.apiSecret}"` : ''}
}
certificates: {}
media: {}
nat: { ice_enforce_list = "lo" }
plugins: { disable = "${allBut(join(lib, 'plugins'), 'libjanus_streaming.so')}" }
transports: { disable = "${allBut(join(lib, 'transports'), 'libjanus_http.so')}" }
loggers: { disable = "libjanus_jsonlog.so" }
events: { broadcast = false }
`,
  );
  await writeFile(
    join(dir, 'janus.transport.http.jcfg'),
    `general: { json = "plain", base_path = "${config.basePath}", http = true, port = ${config.port}, ip = "${config.host}", https = false }
admin: { admin_http = false, admin_https = false }
`,
  );
  await writeFile(
    join(dir, 'janus.plugin.streaming.jcfg'),
    `general: { ${config.adminKey ? `admin_key = "${config.adminKey}"` : ''} }\n`,
  );
}

export class JanusProcess implements Service {
  readonly name = 'janus process';
  private child: ChildProcess | undefined;
  private running = false;
  private restarts = 0;
  private timer: NodeJS.Timeout | undefined;
  private external = false;
  private output = '';

  constructor(
    private readonly url: string,
    private readonly dataDir: string,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    if (await this.answers()) {
      this.external = true;
      this.log.info({ url: this.url }, 'a Janus already answers there: using it, none launched');
      return;
    }
    const lib = janusLibDir();
    if (!lib) {
      throw new OutpostError(
        'START_FAILED',
        'sfu.janus.launch: Janus is not installed (no libjanus_streaming.so under /usr/lib)',
        {
          hint: 'install it (apt-get install janus; `npm start` does), or run a Janus yourself and set sfu.janus.launch: false',
        },
      );
    }
    const address = new URL(this.url);
    const dir = join(this.dataDir, 'janus');
    await mkdir(dir, { recursive: true, mode: 0o750 });
    await writeJanusConfig(dir, {
      lib,
      host: address.hostname.replace(/^\[|\]$/g, ''),
      port: Number(address.port || 80),
      basePath: address.pathname,
      debugLevel: 3,
    });
    this.running = true;
    this.spawn(dir);
    const deadline = performance.now() + START_WAIT_MS;
    while (performance.now() < deadline && this.running) {
      if (await this.answers()) {
        this.log.info({ url: this.url, pid: this.child?.pid }, 'janus launched');
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    this.log.warn(
      { url: this.url, output: this.output.slice(-2000) },
      'launched Janus does not answer yet; the mountpoints will wait for it',
    );
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    const child = this.child;
    this.child = undefined;
    if (child) await stopChild(child, { graceMs: 3000 });
  }

  healthy(): boolean {
    // Janus down is reported per camera (mountpoint missing); never a reason to restart the daemon.
    return this.external || this.running;
  }

  /** The launched process's id (tests restart Janus by killing it). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  private spawn(dir: string): void {
    // Dies with the daemon and inherits none of its files (lifecycle/tied-child.ts), like every child.
    const tied = tiedToParent('janus', ['-F', dir, '-o', '-d', '3']);
    const child = spawn(tied.file, tied.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const keep = (chunk: Buffer): void => {
      this.output = (this.output + chunk.toString()).slice(-8000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    child.on('error', (error) => this.log.error({ err: error }, 'janus could not be started'));
    child.once('exit', (code, signal) => {
      if (this.child === child) this.child = undefined;
      if (!this.running) return;
      this.restarts += 1;
      const delay = Math.min(30_000, 500 * 2 ** Math.min(this.restarts - 1, 6));
      this.log.warn(
        { code, signal, restartInMs: delay, output: this.output.slice(-1000) },
        'janus exited; restarting',
      );
      this.timer = setTimeout(() => {
        if (this.running) this.spawn(dir);
      }, delay);
    });
  }

  private async answers(): Promise<boolean> {
    try {
      const response = await fetch(`${this.url}/info`, { signal: AbortSignal.timeout(500) });
      return response.ok;
    } catch {
      return false;
    }
  }
}
