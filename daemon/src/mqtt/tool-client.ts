// How the `outpost` command's MQTT verbs (chat, clips pull, …) reach a broker. On the box: the
// daemon's own loopback listener as `local-admin`, with the password file in the data dir (readable by
// root and the outpost user only: being able to read it is the permission); the daemon is found by the
// one rule of config/locate.ts (--config, --root, --defaults, else /etc/outpost/outpost.yaml, else the
// embedded defaults). From a console laptop: `--url` with `--username`, `--password-file` and, for
// mqtts://, the site CA (`--ca`).
import { readFile } from 'node:fs/promises';
import { connectAsync, type MqttClient } from 'mqtt';
import { locateConfig } from '../config/locate.js';
import type { Config } from '../config/schema.js';
import { OutpostError } from '../errors.js';
import { LOCAL_ADMIN, localAdminFile } from './local-admin.js';

export interface ToolOptions {
  config?: string;
  root?: string;
  defaults?: boolean;
  url?: string;
  username?: string;
  passwordFile?: string;
  ca?: string;
  site?: string;
}

export interface ToolConnection {
  client: MqttClient;
  site: string;
  /** Who the broker knows us as (chat messages are stamped with it). */
  username: string;
}

/** A broker and who to be there: the daemon's own (local-admin), or `--url` with an identity. */
export interface BrokerTarget {
  url: string;
  username: string;
  password: string;
  ca?: string | undefined;
  site: string;
}

export async function connectTool(options: ToolOptions): Promise<ToolConnection> {
  const target = await brokerTarget(options);
  const client = await connect(target.url, {
    username: target.username,
    password: target.password,
    ...(target.ca ? { ca: [target.ca] } : {}),
  });
  return { client, site: target.site, username: target.username };
}

/** Where a tool connects, by the one rule (config/locate.ts), or `--url` and an identity. */
export async function brokerTarget(options: ToolOptions): Promise<BrokerTarget> {
  if (options.url) return remoteTarget(options, options.url);
  const { config } = await locateConfig(options, true);
  return { ...(await localTarget(config)), site: options.site ?? config.site };
}

/** The daemon's own broker on loopback, as local-admin (password file in its data dir). */
export async function connectLocal(config: Pick<Config, 'dataDir' | 'broker'>): Promise<MqttClient> {
  const { url, username, password } = await localTarget(config);
  return connect(url, { username, password });
}

async function localTarget(
  config: Pick<Config, 'dataDir' | 'broker'>,
): Promise<Omit<BrokerTarget, 'site' | 'ca'>> {
  const password = await readText(
    localAdminFile(config.dataDir),
    'the local-admin password',
    "is the daemon running? run this as root or the user the daemon runs as (sudo -u outpost …), on the box, with the daemon's --config, --root or --defaults",
  );
  const { host, port } = config.broker.tcp;
  return {
    url: `mqtt://${host.includes(':') ? `[${host}]` : host}:${port}`,
    username: LOCAL_ADMIN,
    password,
  };
}

async function remoteTarget(options: ToolOptions, url: string): Promise<BrokerTarget> {
  if (!options.username || !options.passwordFile || !options.site) {
    throw new OutpostError('USAGE_INVALID', '--url needs --username, --password-file and --site', {
      hint: 'e.g. --url mqtts://hub.plant.lan:8883 --ca site-ca.crt --username alice --password-file alice.pw --site plant',
    });
  }
  const password = await readText(options.passwordFile, '--password-file', 'check the path');
  const ca = options.ca
    ? await readText(options.ca, '--ca', 'give the site CA certificate (ca.crt)')
    : undefined;
  if (url.startsWith('mqtts:') && !ca) {
    throw new OutpostError('USAGE_INVALID', 'an mqtts:// broker needs --ca (the site CA certificate)', {
      hint: 'there is no public CA on an isolated site: pass the ca.crt from the site directory',
    });
  }
  return { url, username: options.username, password, ca, site: options.site };
}

async function connect(
  url: string,
  auth: { username: string; password: string; ca?: string[] },
): Promise<MqttClient> {
  try {
    return await connectAsync(url, { ...auth, reconnectPeriod: 0, connectTimeout: 5000, clean: true });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new OutpostError('START_FAILED', `cannot reach the broker at ${url}: ${reason}`, {
      hint: /auth/i.test(reason)
        ? 'the broker refused these credentials'
        : 'is the daemon running (systemctl status outpost)? is the address right?',
      cause: error,
    });
  }
}

async function readText(file: string, what: string, hint: string): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (error) {
    throw new OutpostError('CONFIG_UNREADABLE', `cannot read ${what} (${file})`, { hint, cause: error });
  }
}
