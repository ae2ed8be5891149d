// Type declarations for the two native modules that ship none. Only what Outpost calls is declared.

declare module 'unix-dgram' {
  import type { EventEmitter } from 'node:events';
  export interface UnixDgramSocket extends EventEmitter {
    bind(path: string): void;
    send(buf: Buffer, offset: number, length: number, path: string, callback?: (error?: Error) => void): void;
    close(): void;
  }
  export function createSocket(type: 'unix_dgram', listener?: (message: Buffer) => void): UnixDgramSocket;
}

declare module 'gstreamer-superficial' {
  /** A bus message: `type` plus the message structure's fields, flattened. */
  export interface BusMessage {
    type: string;
    _src_element_name?: string;
    [field: string]: unknown;
  }
  /** An element found by name; its GObject properties read and write as plain fields. */
  export type GstElement = Record<string, unknown>;
  export class Pipeline {
    /** Parses a gst-launch description; throws on an unknown element or bad syntax. */
    constructor(description: string);
    play(): void;
    pause(): void;
    stop(): void;
    sendEOS(): void;
    findChild(name: string): GstElement | undefined;
    pollBus(callback: (message: BusMessage) => void): void;
  }
}

declare module 'aedes-persistence-level' {
  /** A CallBackPersistence over a `level` database (aedes-persistence 11 interface, cleanIncoming included). */
  export default function aedesPersistenceLevel(db: unknown): {
    destroy(): Promise<void>;
    createRetainedStream(pattern: string): AsyncIterable<{ topic: string; payload: Buffer }>;
    /** Drops persisted subscriptions (database and in-memory trie) of the client with this id. */
    removeSubscriptions(client: { id: string }, filters: string[]): Promise<void>;
    cleanSubscriptions(client: { id: string }): Promise<void>;
    cleanIncoming(client: { id: string }): Promise<void>;
    delWill(client: { id: string }): Promise<unknown>;
  };
}
