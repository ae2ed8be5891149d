// FastParser (mqtt/broker/framing.ts) against mqtt-packet's own parser: the same packets, with the same
// fields, whatever way the bytes are cut into chunks, and mqtt-packet's errors for what breaks the rules.
import mqttPacket, { type Packet } from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { FastParser, type PacketParser } from '../../daemon/src/mqtt/broker/framing.js';

const PACKETS: Array<Record<string, unknown>> = [
  { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'c', keepalive: 30 },
  { cmd: 'publish', topic: 'a/b', payload: Buffer.from('zero'), qos: 0, retain: false, dup: false },
  {
    cmd: 'publish',
    topic: 'ä/ü',
    payload: Buffer.from('one'),
    qos: 1,
    messageId: 7,
    retain: true,
    dup: true,
  },
  {
    cmd: 'publish',
    topic: 't',
    payload: Buffer.alloc(40_000, 7),
    qos: 2,
    messageId: 65535,
    retain: false,
    dup: false,
  },
  {
    cmd: 'publish',
    topic: 'empty',
    payload: Buffer.alloc(0),
    qos: 1,
    messageId: 1,
    retain: true,
    dup: false,
  },
  { cmd: 'puback', messageId: 7 },
  { cmd: 'pingreq' },
  { cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'x/#', qos: 1 }] },
  { cmd: 'pubrel', messageId: 9 },
  { cmd: 'disconnect' },
];

/** What a parser emits for `bytes` fed in the given chunk sizes (cycled). */
function parsed(
  make: () => PacketParser,
  bytes: Buffer,
  sizes: number[],
): { packets: unknown[]; errors: string[] } {
  const parser = make();
  const packets: unknown[] = [];
  const errors: string[] = [];
  parser.on('packet', (packet) => packets.push({ ...(packet as object) }));
  parser.on('error', (error) => errors.push(error.message));
  let at = 0;
  for (let i = 0; at < bytes.length; i += 1) {
    const size = sizes[i % sizes.length] as number;
    parser.parse(bytes.subarray(at, at + size));
    at += size;
  }
  return { packets, errors };
}

const plain = (): PacketParser => mqttPacket.parser();
const fast = (): PacketParser => new FastParser(mqttPacket.parser());

describe('FastParser', () => {
  it('emits what mqtt-packet emits, packet for packet and field for field, however the bytes are chunked', () => {
    const bytes = Buffer.concat(PACKETS.map((packet) => mqttPacket.generate(packet as unknown as Packet)));
    const reference = parsed(plain, bytes, [bytes.length]);
    expect(reference.packets).toHaveLength(PACKETS.length);
    for (const sizes of [[bytes.length], [1], [2, 3], [7], [1000, 1], [16_384], [5, 65_536]]) {
      expect(parsed(fast, bytes, sizes), `chunks of ${sizes.join(', ')}`).toEqual(reference);
    }
  });

  it('decodes each topic from its own bytes: topics of the same length one byte apart, in turn, on one connection', () => {
    const topics = ['a/b', 'a/c', 'a/b', 'b/b', 'a/b', 'a/bc', 'a/b'];
    const bytes = Buffer.concat(
      topics.map((topic, i) =>
        mqttPacket.generate({
          cmd: 'publish',
          topic,
          payload: Buffer.from(String(i)),
          qos: 1,
          messageId: i + 1,
          retain: false,
          dup: false,
        }),
      ),
    );
    for (const sizes of [[bytes.length], [1], [5]]) {
      const { packets } = parsed(fast, bytes, sizes);
      expect(packets.map((packet) => (packet as { topic: string }).topic)).toEqual(topics);
    }
  });

  it('closes on an ill-formed UTF-8 topic after a good topic of the same length [MQTT-1.5.3-1]', () => {
    const good = mqttPacket.generate({
      cmd: 'publish',
      topic: 'a/b',
      payload: Buffer.from('x'),
      qos: 0,
      retain: false,
      dup: false,
    });
    // The same packet with the topic's last byte 0xff: no UTF-8 sequence starts with it.
    const bad = Buffer.from(good);
    bad[bad.indexOf('a/b') + 2] = 0xff;
    const { packets, errors } = parsed(fast, Buffer.concat([good, bad]), [good.length]);
    expect(packets).toHaveLength(1);
    expect(errors).toHaveLength(1);
  });

  it("reports mqtt-packet's error for a header with forbidden flags at once, before the body it announces", () => {
    // "GET / HTTP/1.1": 0x47 would be a PUBACK with flags 7, announcing a 69-byte body.
    const errors = parsed(fast, Buffer.from('GET / HTTP/1.1\r\n'), [16]).errors;
    expect(errors).toEqual(parsed(plain, Buffer.from('GET / HTTP/1.1\r\n'), [16]).errors);
    expect(errors).toHaveLength(1);
    expect(parsed(fast, Buffer.from([0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01]), [7]).errors).toHaveLength(1);
  });
});
