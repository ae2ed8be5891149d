// What the console's hub-side services need from the broker they run beside: an in-process
// subscription (no socket, no ACL: the daemon reading its own broker) and an in-process publish.
// The Broker implements it (subscribeLocal, publishLocal); tests can hand in their own.
import type { PublishOptions } from '../mqtt/publisher.js';

export interface LocalBus {
  subscribeLocal(filter: string, handler: (topic: string, payload: Buffer) => void): void;
  /** A Buffer is published as it is (an empty one clears a retained message); an object as JSON. */
  publishLocal(topic: string, payload: object | Buffer, options: PublishOptions): void;
}
