// The narrow publishing interface subsystems are given instead of an MQTT client: the uplink
// (mqtt/uplink.ts) implements it, tests record with it. Topics come from topics.ts, payloads from
// contract.ts; the stamp is the per-message metadata every contract v1 payload carries.

export interface PublishOptions {
  /** 0 for periodic data a newer message supersedes (telemetry); 1 for what must arrive (alerts). */
  qos: 0 | 1;
  retain?: boolean;
}

export interface Publisher {
  publish(topic: string, payload: object, options: PublishOptions): void;
}

/** Sender's wall time, boot id and per-boot counter (contract.ts `meta`); one call per message. */
export interface Stamp {
  at: number;
  bootId: string;
  seq: number;
}

export type Stamper = () => Stamp;
