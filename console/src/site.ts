// The site as the page sees it, built from MQTT alone: retained box status (and its last will),
// retained camera states, the hub's retained alert inbox, chat history and live messages, telemetry,
// command replies. One MQTT.js connection over WebSocket to the hub's own origin (/mqtt), whose login
// is the session cookie: the broker knows the operator by the account they logged in with, and its
// ACL decides what arrives. Payload types come from the topic contract the daemon publishes with
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
import { INBOX_SAFE_KEY, inboxAudience, sitePrefix, topics } from '../../daemon/src/mqtt/topics.js';
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

export class Site {
  readonly devices = new Map<string, DeviceView>();
  readonly inbox = new Map<string, InboxEntryPayload>();
  readonly channels = new Map<string, ChannelView>();
  /** Inbox entries made here from a box's alert, until the hub's own entry arrives (not acknowledgeable yet). */
  readonly provisional = new Set<string>();
  connection: Connection = 'connecting';
  /** Why the connection is down, for the status line. */
  problem = '';
  private client: MqttClient | undefined;
  private readonly listeners = new Set<Listener>();
  private scheduled = false;
  private readonly pending = new Map<string, (reply: ReplyPayload) => void>();
  private readonly prefix: string;

  constructor(
    readonly session: SessionInfo,
    private readonly onLoggedOut: () => void,
  ) {
    this.prefix = sitePrefix(session.site);
    this.channel('general');
  }

  get operator(): boolean {
    return this.session.role === 'console' || this.session.role === 'admin';
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
    const p = this.prefix;
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
    this.changed();
  }

  sendChat(channel: string, text: string): void {
    this.client?.publish(topics.chat(this.session.site, channel), JSON.stringify({ text }), { qos: 1 });
  }

  acknowledge(entry: InboxEntryPayload): void {
    this.client?.publish(topics.inboxAck(this.session.site, entry.audience, entry.device, entry.key), '{}', {
      qos: 1,
    });
  }

  /** Publish a command and resolve with the box's reply (reject after 10 s without one). */
  command(device: string, verb: string, args: Record<string, unknown>): Promise<ReplyPayload> {
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
      this.client?.publish(topics.cmd(this.session.site, device, verb), JSON.stringify({ id, args }), {
        qos: 1,
      });
    });
  }

  private receive(topic: string, payload: Uint8Array): void {
    if (!topic.startsWith(`${this.prefix}/`)) return;
    const levels = topic.slice(this.prefix.length + 1).split('/');
    const text = new TextDecoder().decode(payload);
    let body: unknown;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      return; // not contract JSON (a foreign client's plain text): nothing to show
    }
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
        const waiting = this.pending.get(body.id);
        if (waiting) {
          this.pending.delete(body.id);
          waiting(body as unknown as ReplyPayload);
        }
      } else {
        return;
      }
    } else {
      return;
    }
    this.changed();
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
    if (
      !NAME.test(channel) ||
      !isObject(body) ||
      typeof body.text !== 'string' ||
      typeof body.from !== 'string'
    )
      return;
    const view = this.channel(channel);
    const message = body as unknown as ChatPayload;
    if (view.messages.some((known) => known.id === message.id)) return;
    view.messages.push(message);
    if (view.messages.length > MAX_CHAT) view.messages.shift();
  }

  private changed(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      for (const listener of this.listeners) listener();
    });
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
