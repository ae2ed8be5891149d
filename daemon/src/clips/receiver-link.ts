// The clip receiver's link to a site broker over MQTT.js: a persistent session (clean: false) with
// QoS 1 subscriptions, so what was published while the receiver was away waits at the broker. A
// message is acknowledged only after the receiver has handled it: MQTT.js sends the PUBACK from
// `handleMessage`'s callback, and hands over the next packet only after it (one at a time, in order).
// A message the receiver could not handle (a disk error) is not acknowledged; the connection is then
// dropped, and the broker sends it again on the reconnect ([MQTT-4.4.0-1]).
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import type { ReceiverLink } from './receiver.js';

export interface ReceiverLinkOptions {
  url: string;
  username: string;
  password: string;
  /** PEM CA for mqtts:// (the site CA). */
  ca?: Buffer | string | undefined;
  /** The persistent session's client id: one per receiver, the same at every start. */
  clientId: string;
  /** Connection events, for people: reconnects and losses. */
  say?: (line: string) => void;
}

/** Wait before dropping the connection after a message could not be handled (a disk error). */
const REDELIVER_AFTER_MS = 2000;

export function mqttReceiverLink(options: ReceiverLinkOptions): ReceiverLink {
  const say = options.say ?? (() => undefined);
  let client: MqttClient | undefined;
  let redeliver: NodeJS.Timeout | undefined;
  return {
    async open(filters, handle) {
      const mqtt = connect(options.url, {
        username: options.username,
        password: options.password,
        clientId: options.clientId,
        clean: false,
        reconnectPeriod: 2000,
        connectTimeout: 10_000,
        protocolVersion: 4,
        ...(options.ca ? { ca: options.ca, rejectUnauthorized: true } : {}),
      } satisfies IClientOptions);
      client = mqtt;
      mqtt.handleMessage = (packet, done) => {
        const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
        handle(packet.topic, payload).then(
          () => done(),
          (error: unknown) => {
            done(error instanceof Error ? error : new Error(String(error)));
            redeliver ??= setTimeout(() => {
              redeliver = undefined;
              mqtt.stream.destroy();
            }, REDELIVER_AFTER_MS);
          },
        );
      };
      mqtt.on('error', (error) => say(`mqtt: ${error.message}`));
      let connects = 0;
      mqtt.on('connect', () => {
        connects += 1;
        if (connects > 1) say(`reconnected to ${options.url}`);
      });
      mqtt.on('offline', () =>
        say(`lost ${options.url}; reconnecting (the session keeps what is sent meanwhile)`),
      );
      try {
        await new Promise<void>((resolve, reject) => {
          mqtt.once('connect', () => resolve());
          mqtt.once('error', reject);
        });
        const granted = await mqtt.subscribeAsync([...filters], { qos: 1 });
        const refused = granted.filter((grant) => grant.qos === 128).map((grant) => grant.topic);
        if (refused.length > 0)
          throw new Error(
            `the broker refused the subscriptions ${refused.join(', ')}: use a console identity`,
          );
      } catch (error) {
        client = undefined;
        mqtt.end(true); // no reconnecting in the background of a receiver that failed to start
        throw error;
      }
    },
    publish(topic, payload) {
      client?.publish(topic, payload, { qos: 1 }, (error) => {
        if (error) say(`${topic}: ${error.message}`);
      });
    },
    async close() {
      clearTimeout(redeliver);
      redeliver = undefined;
      const mqtt = client;
      client = undefined;
      await mqtt?.endAsync();
    },
  };
}
