// The broker's on-disk persistence (aedes-persistence-level) with one lookup taken off the hot path.
//
// On every PUBACK Aedes asks the persistence to forget the acknowledged message
// (`outgoingClearMessageId`), which in the level persistence is a LevelDB read, through the libuv
// thread pool, followed by a batch delete when found. For a clean-session client nothing is ever
// found: Aedes stores a clean session's in-flight QoS 1 messages nowhere (the session ends with the
// connection), except in two places that both go through `outgoingUpdate` first: the queue left by an
// earlier persistent session of the same client id, replayed at CONNECT, and a QoS 2 PUBREL. So the
// wrapper remembers, per clean-session client, the message ids it was asked to store, and answers
// the others at once. bench:broker: the read was 14 % of the broker's CPU at QoS 1.
interface ClientLike {
  clean?: boolean;
}
interface PacketLike {
  messageId?: number;
}
type Callback = (...args: unknown[]) => void;
type Method = (client: ClientLike, packet: PacketLike, cb?: Callback) => unknown;

export function skipCleanSessionClears<T extends object>(persistence: T): T {
  const stored = new WeakMap<ClientLike, Set<number>>();
  const target = persistence as unknown as Record<'outgoingUpdate' | 'outgoingClearMessageId', Method>;
  const update = target.outgoingUpdate.bind(persistence);
  const clear = target.outgoingClearMessageId.bind(persistence);
  target.outgoingUpdate = (client, packet, cb) => {
    if (client.clean === true && packet.messageId !== undefined) {
      let ids = stored.get(client);
      if (!ids) stored.set(client, (ids = new Set()));
      ids.add(packet.messageId);
    }
    return update(client, packet, cb);
  };
  target.outgoingClearMessageId = (client, packet, cb) => {
    if (client.clean === true && cb === undefined && packet.messageId !== undefined) {
      const ids = stored.get(client);
      if (!ids?.delete(packet.messageId)) return Promise.resolve(undefined);
    }
    return clear(client, packet, cb);
  };
  return persistence;
}

/**
 * Aedes pipes the retained-message stream of a SUBSCRIBE with `.pipe()` and no error listener: a
 * failed read (the store closing under a subscribe in flight at shutdown, a disk error) was an
 * uncaught exception that took the daemon down. The error goes to `onError`; the subscriber simply
 * gets no more retained messages from that stream.
 */
export function catchRetainedStreamErrors<T extends object>(
  persistence: T,
  onError: (error: Error) => void,
): T {
  const target = persistence as unknown as Record<
    'createRetainedStream' | 'createRetainedStreamCombi',
    (pattern: unknown) => NodeJS.ReadableStream
  >;
  for (const name of ['createRetainedStream', 'createRetainedStreamCombi'] as const) {
    const create = target[name].bind(persistence);
    target[name] = (pattern) => create(pattern).on('error', onError);
  }
  return persistence;
}
