// An operations centre for tests and bench:sites: Debian's mosquitto as the central broker (TLS, a
// password file and an ACL, as `outpost-provision centre` writes them), and a TCP proxy in front of it
// that can cut the link (every connection dropped, new ones refused) for a while.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { freePort, tempDir, until } from './processes.js';

export interface CentreOptions {
  /** mosquitto.conf lines for TLS: cafile, certfile, keyfile (PEM paths). */
  tls: { ca: string; cert: string; key: string };
  /** Contents of the password file (`user:$7$…` lines) and the ACL file. */
  passwd: string;
  acl: string;
  /** A second listener that requires a client certificate (CN = user name). */
  certListener?: boolean;
  /** Keep retained messages and sessions on disk across restarts. */
  persistence?: boolean;
  /** Extra mosquitto.conf lines. */
  extra?: string[];
}

export interface Centre {
  port: number;
  certPort: number | undefined;
  dir: string;
  log(): string;
  pid(): number | undefined;
  stop(): Promise<void>;
  restart(): Promise<void>;
}

/**
 * Run mosquitto on a config `outpost-provision centre init` wrote (outpost.conf, used verbatim), with
 * what a test needs in front: stderr logging and, as root, `user root` (mosquitto would otherwise switch
 * to its own user, who cannot read the 0600 files in our temp dirs). `port`: its password listener.
 */
export async function startCentreFromConf(conf: string, port: number, certPort?: number): Promise<Centre> {
  const dir = await tempDir('outpost-centre-');
  const head = [
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'log_type notice',
    'log_type information',
    `persistence_location ${dir}/`,
    ...(process.getuid?.() === 0 ? ['user root'] : []),
  ];
  // per_listener_settings must come before any listener, and may appear once: keep it first.
  const lines = conf.split('\n');
  const first = lines.findIndex((line) => line.startsWith('per_listener_settings'));
  const ordered =
    first >= 0 ? [lines[first] ?? '', ...head, ...lines.filter((_, i) => i !== first)] : [...head, ...lines];
  await writeFile(join(dir, 'mosquitto.conf'), `${ordered.join('\n')}\n`);
  return runMosquitto(dir, port, certPort);
}

export async function startCentre(options: CentreOptions): Promise<Centre> {
  const dir = await tempDir('outpost-centre-');
  const port = await freePort();
  const certPort = options.certListener ? await freePort() : undefined;
  await writeFile(join(dir, 'passwd'), options.passwd, { mode: 0o600 });
  await writeFile(join(dir, 'acl'), options.acl, { mode: 0o600 });
  await mkdir(join(dir, 'data'), { recursive: true });
  const tlsLines = [
    `cafile ${options.tls.ca}`,
    `certfile ${options.tls.cert}`,
    `keyfile ${options.tls.key}`,
    'tls_version tlsv1.2',
  ];
  const conf = [
    'per_listener_settings false',
    'allow_anonymous false',
    `password_file ${join(dir, 'passwd')}`,
    `acl_file ${join(dir, 'acl')}`,
    `persistence ${options.persistence === false ? 'false' : 'true'}`,
    `persistence_location ${join(dir, 'data')}/`,
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'log_type notice',
    'log_type information',
    'connection_messages true',
    'max_queued_messages 100000',
    `listener ${port} 127.0.0.1`,
    ...tlsLines,
    ...(certPort
      ? [
          `listener ${certPort} 127.0.0.1`,
          ...tlsLines,
          'require_certificate true',
          'use_identity_as_username true',
        ]
      : []),
    // Started as root (CI), mosquitto would switch to its own user, who cannot read our temp files.
    ...(process.getuid?.() === 0 ? ['user root'] : []),
    ...(options.extra ?? []),
  ].join('\n');
  await writeFile(join(dir, 'mosquitto.conf'), `${conf}\n`);
  return runMosquitto(dir, port, certPort);
}

async function runMosquitto(dir: string, port: number, certPort: number | undefined): Promise<Centre> {
  let child: ChildProcess | undefined;
  let text = '';
  const launch = async (): Promise<void> => {
    const started = text.length;
    child = spawn('mosquitto', ['-c', join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr?.on('data', (chunk: Buffer) => (text += chunk.toString()));
    await until(() => text.slice(started).includes(' running'), 10_000, 'mosquitto (centre) to start').catch(
      (error: Error) => {
        throw new Error(`${error.message}; mosquitto said:\n${text}`);
      },
    );
  };
  const halt = async (): Promise<void> => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()));
    running.kill('SIGTERM');
    const timer = setTimeout(() => running.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  await launch();
  return {
    port,
    certPort,
    dir,
    log: () => text,
    pid: () => child?.pid,
    stop: halt,
    async restart() {
      await halt();
      await launch();
    },
  };
}

/**
 * A TCP proxy standing for the site's WAN link: `cut(ms)` drops every connection through it and
 * refuses new ones for `ms` (what a pulled cable or a dead VPN looks like to both ends).
 */
export class LinkProxy {
  private server: Server | undefined;
  private readonly pairs = new Set<Socket>();
  /** Each socket → the one its bytes go to. */
  private readonly partners = new Map<Socket, Socket>();
  private stalled = false;
  private downUntil = 0;
  private resume: NodeJS.Timeout | undefined;
  port = 0;

  constructor(
    private readonly target: { host: string; port: number },
    private readonly host = '127.0.0.1',
  ) {}

  async start(port = 0): Promise<number> {
    const server = createServer((socket) => {
      if (Date.now() < this.downUntil) {
        socket.destroy();
        return;
      }
      const upstream = createConnection(this.target);
      // A WAN link adds no Nagle delay of its own.
      socket.setNoDelay(true);
      upstream.setNoDelay(true);
      for (const [a, b] of [
        [socket, upstream],
        [upstream, socket],
      ] as const) {
        this.pairs.add(a);
        this.partners.set(a, b);
        a.on('error', () => b.destroy());
        a.on('close', () => {
          this.pairs.delete(a);
          this.partners.delete(a);
          b.destroy();
        });
        if (!this.stalled) a.pipe(b);
      }
    });
    await new Promise<void>((resolve) => server.listen(port, this.host, resolve));
    this.server = server;
    const address = server.address();
    this.port = typeof address === 'object' && address ? address.port : 0;
    return this.port;
  }

  /** Cut the link for `ms`: every open connection dropped at once, new ones refused until then. */
  cut(ms: number): void {
    this.downUntil = Date.now() + ms;
    for (const socket of this.pairs) socket.destroy();
    clearTimeout(this.resume);
  }

  /** Drop new connections until restore(). */
  down(): void {
    this.cut(Number.MAX_SAFE_INTEGER / 2);
  }

  /**
   * Stop carrying bytes, either way, without closing anything: a link that went silent (a dead route, a
   * blackholed VPN) before either end's keepalive notices. Both ends still believe the link is up.
   */
  stall(): void {
    this.stalled = true;
    for (const [a, b] of this.partners) {
      a.unpipe(b);
      a.pause();
    }
  }

  /** Accept connections again, and carry bytes again after stall(). */
  restore(): void {
    this.downUntil = 0;
    if (!this.stalled) return;
    this.stalled = false;
    for (const [a, b] of this.partners) a.pipe(b);
  }

  get isDown(): boolean {
    return Date.now() < this.downUntil;
  }

  async stop(): Promise<void> {
    clearTimeout(this.resume);
    for (const socket of this.pairs) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** A free port for a centre proxy (re-exported for tests that start several). */
export { freePort };
