// The embedded broker with real foreign clients: Debian's mosquitto_sub and mosquitto_pub talk to it
// on loopback, as a field tech's laptop or the console would.
import { spawn } from 'node:child_process';
import { connectAsync } from 'mqtt';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { configSchema } from '../../daemon/src/config/schema.js';
import { Broker } from '../../daemon/src/mqtt/broker.js';
import { freePort } from '../support/processes.js';

const log = pino({ level: 'silent' });
let broker: Broker | undefined;

afterEach(async () => {
  await broker?.stop();
  broker = undefined;
});

function run(command: string, args: string[], ms = 10_000): Promise<{ code: number | null; stdout: string }> {
  const child = spawn(command, args);
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  return new Promise((resolve) =>
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout });
    }),
  );
}

describe('embedded broker', () => {
  it('carries a retained message from mosquitto_pub to mosquitto_sub on loopback', async () => {
    const port = await freePort();
    broker = new Broker(configSchema.parse({ broker: { tcp: { port } } }).broker, log);
    await broker.start();
    expect(broker.healthy()).toBe(true);
    expect(broker.address()).toEqual({ host: '127.0.0.1', port });

    const topic = 'outpost/v1/test/box1/status';
    const published = await run('mosquitto_pub', [
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-t',
      topic,
      '-m',
      'online',
      '-r',
      '-q',
      '1',
    ]);
    expect(published.code).toBe(0);
    const received = await run('mosquitto_sub', [
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-t',
      topic,
      '-C',
      '1',
      '-W',
      '5',
      '-v',
    ]);
    expect(received.code).toBe(0);
    expect(received.stdout.trim()).toBe(`${topic} online`);
  });

  it('stop closes the listener and disconnects clients at once, and is idempotent', async () => {
    const port = await freePort();
    broker = new Broker(configSchema.parse({ broker: { tcp: { port } } }).broker, log);
    await broker.start();
    const client = await connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 });
    const closed = new Promise<number>((resolve) => client.once('close', () => resolve(Date.now())));
    const began = Date.now();
    await broker.stop();
    await broker.stop();
    expect(broker.healthy()).toBe(false);
    // The client sees its broker leave instead of a silent socket.
    expect((await closed) - began).toBeLessThan(2000);
    await client.endAsync(true);
    const refused = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-t', 't', '-m', 'x']);
    expect(refused.code).not.toBe(0);
  });
});
