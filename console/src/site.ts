// The site as the page sees it, built from MQTT alone: retained box status (and its last will),
// retained camera states, the hub's retained alert inbox, chat history and live messages, telemetry,
// command replies. One MQTT.js connection over WebSocket to the page's own origin (/mqtt), whose login
// is the session cookie: the broker knows the operator by the account they logged in with, and its
// ACL decides what arrives. At the operations centre the same page, pointed at the central broker,
// keeps one Site per site whose topics arrive (contract v1 has the site in every topic). Payload types come from the topic contract the daemon publishes with
// (daemon/src/mqtt/contract.ts, type-only: no daemon code in the page).
import mqtt, { type MqttClient } from 'mqtt';
import type {
  AlertPayload,
  CameraStatePayload,
  ChatPayload,
  InboxEntryPayload,
  ReplyPayload,
  StatusPayload,
  TelemetryPayload,
} from '../../daemon/src/mqtt/contract.js';
import {
  INBOX_SAFE_KEY,
  inboxAudience,
  sitePrefix,
  TOPIC_VERSION,
  topics,
} from '../../daemon/src/mqtt/topics.js';
import type { SessionInfo, Sample } from './api.js';
import { takeSocket } from './early.js';
import { markPage } from './marks.js';

export type { AlertPayload, CameraStatePayload, ChatPayload, InboxEntryPayload, TelemetryPayload };

export interface DeviceView {
  name: string;
  status: StatusPayload | undefined;
  cameras: Map<string, CameraStatePayload>;
  telemetry: TelemetryPayload | undefined;
  telemetryAt: number | undefined;
  samples: Sample[];
}

export interface ChannelView {
  name: string;
  messages: ChatPayload[];
}

export type Connection = 'connecting' | 'online' | 'offline';

type Listener = () => void;

const NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;
const MAX_CHAT = 500;

/**
 * The page's one MQTT connection to the broker behind the console: the hub's (one site), or at the
 * operations centre the central broker (every site bridged to it; `session.centre`). Each site seen in
 * a topic (`outpost/v1/{site}/…`, contract v1) gets its own Site; on a hub only the hub's site.
 */
export class Link {
  readonly sites = new Map<string, Site>();
  connection: Connection = 'connecting';
  /** Why the connection is down, for the status line. */
  problem = '';
  private client: MqttClient | undefined;
  private readonly listeners = new Set<Listener>();
  private scheduled = false;
  private readonly pending = new Map<string, (reply: ReplyPayload) => void>();

  constructor(
    readonly session: SessionInfo,
    private readonly onLoggedOut: () => void,
  ) {
    if (!session.centre) this.site(session.site);
  }

  get operator(): boolean {
    return this.session.role === 'console' || this.session.role === 'admin';
  }

  /** Every site known, by name (at the centre: as their topics arrive). */
  list(): Site[] {
    return [...this.sites.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  site(name: string): Site {
    let site = this.sites.get(name);
    if (!site) {
      site = new Site(this, name);
      this.sites.set(name, site);
    }
    return site;
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  connect(): void {
    const client = mqtt.connect(`wss://${location.host}/mqtt`, {
      // The login is the session cookie, sent with the WebSocket upgrade; the broker requires this name.
      username: this.session.username,
      clientId: `${this.session.username}.console-${Math.random().toString(36).slice(2, 10)}`,
      protocolVersion: 4,
      clean: true,
      keepalive: 20,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      // The first connection uses the WebSocket boot.ts opened while the page was loading.
      createWebsocket: (url: string, protocols: string[]) => takeSocket() ?? new WebSocket(url, protocols),
    });
    this.client = client;
    // At the centre every site: `+` where the site's name goes.
    const p = sitePrefix(this.session.centre ? '+' : this.session.site);
    const filters = this.operator
      ? [
          `${p}/+/status`,
          `${p}/+/camera/+/state`,
          `${p}/+/telemetry`,
          `${p}/inbox/#`,
          `${p}/chat/+`,
          `${p}/chat/+/history`,
          `${p}/+/reply/+`,
        ]
      : [`${p}/chat/+`, `${p}/chat/+/history`, `${p}/inbox/site/#`];
    client.on('connect', () => {
      markPage('mqtt');
      this.connection = 'online';
      this.problem = '';
      client.subscribe(filters, { qos: 1 });
      this.changed();
    });
    client.on('message', (topic, payload) => this.receive(topic, payload));
    client.on('offline', () => {
      this.connection = 'offline';
      this.changed();
    });
    client.on('error', (error) => {
      this.problem = error.message;
      this.changed();
    });
    client.on('close', () => {
      if (this.connection === 'online') this.connection = 'offline';
      this.changed();
      // A refused WebSocket upgrade (401) means the login ended: back to the login page.
      void fetch('/api/session', { credentials: 'same-origin' }).then(
        (response) => {
          if (response.status === 401) this.onLoggedOut();
        },
        () => undefined,
      );
    });
  }

  close(): void {
    this.client?.end(true);
    this.client = undefined;
  }

  publish(topic: string, payload: string): void {
    this.client?.publish(topic, payload, { qos: 1 });
  }

  /** Publish a command and resolve with the box's reply (reject after 10 s without one). */
  command(site: string, device: string, verb: string, args: Record<string, unknown>): Promise<ReplyPayload> {
    const id = `${this.session.username}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${device} did not answer within 10 s`));
      }, 10_000);
      this.pending.set(id, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      this.publish(topics.cmd(site, device, verb), JSON.stringify({ id, args }));
    });
  }

  /** A command's reply, when this page is waiting for it. */
  answered(reply: ReplyPayload): boolean {
    const waiting = this.pending.get(reply.id);
    if (!waiting) return false;
    this.pending.delete(reply.id);
    waiting(reply);
    return true;
  }

  changed(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      for (const listener of this.listeners) listener();
    });
  }

  private receive(topic: string, payload: Uint8Array): void {
    const [root, version, siteName, ...levels] = topic.split('/');
    if (root !== 'outpost' || version !== TOPIC_VERSION || !siteName || !NAME.test(siteName)) return;
    if (!this.session.centre && siteName !== this.session.site) return;
    const text = new TextDecoder().decode(payload);
    let body: unknown;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      return; // not contract JSON (a foreign client's plain text): nothing to show
    }
    if (this.site(siteName).receive(levels, body)) this.changed();
  }
}

/** One site as the page sees it: its boxes, its inbox, its chat. */
export class Site {
  readonly devices = new Map<string, DeviceView>();
  readonly inbox = new Map<string, InboxEntryPayload>();
  readonly channels = new Map<string, ChannelView>();
  /** Inbox entries made here from a box's alert, until the hub's own entry arrives (not acknowledgeable yet). */
  readonly provisional = new Set<string>();

  constructor(
    readonly link: Link,
    readonly name: string,
  ) {
    this.channel('general');
  }

  get session(): SessionInfo {
    return this.link.session;
  }

  get operator(): boolean {
    return this.link.operator;
  }

  get connection(): Connection {
    return this.link.connection;
  }

  get problem(): string {
    return this.link.problem;
  }

  subscribe(listener: Listener): () => void {
    return this.link.subscribe(listener);
  }

  device(name: string): DeviceView {
    let device = this.devices.get(name);
    if (!device) {
      device = {
        name,
        status: undefined,
        cameras: new Map(),
        telemetry: undefined,
        telemetryAt: undefined,
        samples: [],
      };
      this.devices.set(name, device);
    }
    return device;
  }

  channel(name: string): ChannelView {
    let channel = this.channels.get(name);
    if (!channel) {
      channel = { name, messages: [] };
      this.channels.set(name, channel);
    }
    return channel;
  }

  /** Telemetry history from the hub, so the chart has the last hour the moment the page opens. */
  loadHistory(devices: Record<string, { last: unknown; lastAt: number | null; samples: Sample[] }>): void {
    for (const [name, history] of Object.entries(devices)) {
      const device = this.device(name);
      device.samples = [
        ...history.samples,
        ...device.samples.filter(([at]) => at > (history.samples.at(-1)?.[0] ?? 0)),
      ];
      if (!device.telemetry && history.last) {
        device.telemetry = history.last as TelemetryPayload;
        device.telemetryAt = history.lastAt ?? undefined;
      }
    }
    this.link.changed();
  }

  sendChat(channel: string, text: string): void {
    this.link.publish(topics.chat(this.name, channel), JSON.stringify({ text }));
  }

  /**
   * On a hub the broker stamps who acknowledged. At the centre the acknowledgement goes on the
   * operator's own `…/ack/{name}` (the centre's ACL allows no other name); the site's bridge carries it
   * down and the site stamps it `by: centre` with that operator.
   */
  acknowledge(entry: InboxEntryPayload): void {
    const { audience, device, key } = entry;
    this.link.publish(
      this.session.centre
        ? topics.inboxAckBy(this.name, audience, device, key, this.session.username)
        : topics.inboxAck(this.name, audience, device, key),
      '{}',
    );
  }

  /** Publish a command to one of this site's boxes and resolve with its reply. */
  command(device: string, verb: string, args: Record<string, unknown>): Promise<ReplyPayload> {
    return this.link.command(this.name, device, verb, args);
  }

  /** One message under this site's prefix (`levels` after it); true when something changed. */
  receive(levels: string[], body: unknown): boolean {
    const [first, second, third, fourth, fifth] = levels;
    if (first === 'chat' && second !== undefined) {
      if (third === 'history' && levels.length === 3) this.chatHistory(second, body);
      else if (levels.length === 2) this.chatMessage(second, body);
    } else if (first === 'inbox' && levels.length === 4 && second && third && fourth) {
      const id = `${third}/${fourth}`;
      if (body === undefined) this.inbox.delete(id);
      else if (isObject(body) && isObject(body.alert))
        this.inbox.set(id, body as unknown as InboxEntryPayload);
    } else if (first && NAME.test(first) && first !== 'chat' && first !== 'inbox') {
      const device = this.device(first);
      if (
        second === 'status' &&
        levels.length === 2 &&
        isObject(body) &&
        (body.state === 'online' || body.state === 'offline')
      ) {
        device.status = body as unknown as StatusPayload;
      } else if (
        second === 'camera' &&
        fourth === 'state' &&
        third &&
        levels.length === 4 &&
        isObject(body)
      ) {
        device.cameras.set(third, body as unknown as CameraStatePayload);
        markPage('cameras');
      } else if (
        second === 'telemetry' &&
        levels.length === 2 &&
        isObject(body) &&
        typeof body.cpuLoadPercent === 'number'
      ) {
        const telemetry = body as unknown as TelemetryPayload;
        device.telemetry = telemetry;
        device.telemetryAt = Date.now();
        const last = device.samples.at(-1);
        if (!last || Date.now() - last[0] >= 5000)
          device.samples.push([Date.now(), telemetry.cpuLoadPercent, telemetry.temperatureC]);
        const since = Date.now() - 3600_000;
        while ((device.samples[0]?.[0] ?? Infinity) < since) device.samples.shift();
      } else if (second === 'alert' && levels.length === 2 && isObject(body) && typeof body.id === 'string') {
        this.provisionalAlert(first, body as unknown as AlertPayload);
      } else if (second === 'reply' && fifth === undefined && isObject(body) && typeof body.id === 'string') {
        return this.link.answered(body as unknown as ReplyPayload);
      } else {
        return false;
      }
    } else {
      return false;
    }
    return true;
  }

  /** An alert straight from its box: an inbox entry until the hub's own arrives (same key). */
  private provisionalAlert(device: string, alert: AlertPayload): void {
    if (alert.device !== device || !INBOX_SAFE_KEY.test(alert.id)) return; // the hub's entry will come
    const id = `${device}/${alert.id}`;
    const known = this.inbox.get(id);
    if (known) {
      if (known.alert.seq !== alert.seq || known.alert.bootId !== alert.bootId)
        this.inbox.set(id, { ...known, alert });
      return;
    }
    const now = Date.now();
    this.provisional.add(id);
    this.inbox.set(id, {
      key: alert.id,
      audience: inboxAudience(alert.kind),
      device,
      alert,
      firstAt: now,
      updatedAt: now,
      ack: null,
      ...(alert.kind === 'panic' && alert.clipId
        ? { clip: { state: 'waiting', have: 0, of: null, sizeBytes: null, sha256: null, durationMs: null } }
        : {}),
    });
  }

  private chatHistory(channel: string, body: unknown): void {
    if (!NAME.test(channel)) return;
    const view = this.channel(channel);
    if (!Array.isArray(body)) return;
    const known = new Set(view.messages.map((message) => message.id));
    const older = (body as ChatPayload[]).filter((message) => isObject(message) && !known.has(message.id));
    view.messages = [...older, ...view.messages].sort((a, b) => a.at - b.at).slice(-MAX_CHAT);
  }

  private chatMessage(channel: string, body: unknown): void {
    if (!NAME.test(channel) || !isObject(body) || typeof body.text !== 'string') return;
    let message: ChatPayload;
    if (typeof body.from === 'string') message = body as unknown as ChatPayload;
    else if (this.session.centre)
      // Sent at the centre, whose broker stamps nothing: the site stamps it `from: centre` and keeps it.
      message = {
        id: `centre-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`,
        from: 'centre',
        role: 'console',
        text: body.text,
        at: Date.now(),
      };
    else return;
    const view = this.channel(channel);
    if (view.messages.some((known) => known.id === message.id)) return;
    view.messages.push(message);
    if (view.messages.length > MAX_CHAT) view.messages.shift();
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
