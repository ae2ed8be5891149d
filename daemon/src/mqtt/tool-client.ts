// How the `outpost` command's MQTT verbs (chat, …) reach a broker. On the box: the daemon's own
// loopback listener as `local-admin`, with the password file in the data dir (readable by root and the
// outpost user only: being able to read it is the permission). From a console laptop: `--url` with
// `--username`, `--password-file` and, for mqtts://, the site CA (`--ca`).
import { readFile } from 'node:fs/promises';
import { connectAsync, type MqttClient } from 'mqtt';
import { DEFAULT_CONFIG_PATH, embeddedDefaults, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { OutpostError } from '../errors.js';
import { LOCAL_ADMIN, localAdminFile } from './local-admin.js';

export interface ToolOptions {
  config?: string;
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

export async function connectTool(options: ToolOptions): Promise<ToolConnection> {
  if (options.url) return connectRemote(options, options.url);
  const config = options.defaults
    ? embeddedDefaults()
    : await loadConfig(options.config ?? DEFAULT_CONFIG_PATH);
  const client = await connectLocal(config);
  return { client, site: options.site ?? config.site, username: LOCAL_ADMIN };
}

/** The daemon's own broker on loopback, as local-admin (password file in its data dir). */
export async function connectLocal(config: Pick<Config, 'dataDir' | 'broker'>): Promise<MqttClient> {
  const password = await readText(
    localAdminFile(config.dataDir),
    'the local-admin password',
    'run this as root or the user the daemon runs as (sudo -u outpost …), on the box, with its --config',
  );
  const { host, port } = config.broker.tcp;
  return connect(`mqtt://${host.includes(':') ? `[${host}]` : host}:${port}`, {
    username: LOCAL_ADMIN,
    password,
  });
}

async function connectRemote(options: ToolOptions, url: string): Promise<ToolConnection> {
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
  const client = await connect(url, { username: options.username, password, ...(ca ? { ca: [ca] } : {}) });
  return { client, site: options.site, username: options.username };
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
