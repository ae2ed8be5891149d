// Commands from the console: `…/{device}/cmd/{verb}` with `{ id, args }`, answered on
// `…/{device}/reply/{verb}` with the same id. One handler per verb; an unknown verb, a payload that is
// not a command, or bad arguments get an error reply with a stable code, never silence.
import type { Logger } from 'pino';
import { CommandError } from '../errors.js';
import type { Service } from '../lifecycle/service.js';
import { commandPayload, type ReplyPayload } from './contract.js';
import { topics } from './topics.js';
import type { Publisher, Stamp } from './publisher.js';
import type { MessageHandler } from './uplink.js';

/** A verb's handler: resolves with the result, or throws a CommandError. */
export type Verb = (args: Record<string, unknown>) => Promise<unknown>;

interface Channel extends Publisher {
  subscribe(filter: string, handler: MessageHandler): void;
  stamp(): Stamp;
}

export interface CommandsDeps {
  site: string;
  device: string;
  channel: Channel;
  verbs: Readonly<Record<string, Verb>>;
  log: Logger;
}

export class Commands implements Service {
  readonly name = 'commands';
  private started = false;

  constructor(private readonly deps: CommandsDeps) {}

  start(): Promise<void> {
    if (!this.started) {
      this.started = true;
      this.deps.channel.subscribe(topics.cmd(this.deps.site, this.deps.device, '+'), (topic, payload) => {
        void this.handle(topic, payload);
      });
    }
    return Promise.resolve();
  }

  stop(): Promise<void> {
    // The subscription stays with the uplink's session; with no replies after stop, nothing is lost:
    // the commands wait in the persistent session for the next start.
    return Promise.resolve();
  }

  healthy(): boolean {
    return this.started;
  }

  private async handle(topic: string, payload: Buffer): Promise<void> {
    const verb = topic.slice(topic.lastIndexOf('/') + 1);
    let id = 'unknown';
    let reply: Omit<ReplyPayload, 'at' | 'bootId' | 'seq'>;
    try {
      let raw: unknown;
      try {
        raw = JSON.parse(payload.toString('utf8'));
      } catch {
        throw new CommandError('BAD_COMMAND', 'payload is not JSON: send {"id": "...", "args": {...}}');
      }
      const loose = raw as { id?: unknown };
      if (typeof loose?.id === 'string' && loose.id.length <= 64) id = loose.id;
      const command = commandPayload.safeParse(raw);
      if (!command.success) {
        throw new CommandError(
          'BAD_COMMAND',
          command.error.issues
            .map((issue) => `${issue.path.join('.') || 'payload'}: ${issue.message}`)
            .join('; '),
        );
      }
      const handler = Object.hasOwn(this.deps.verbs, verb) ? this.deps.verbs[verb] : undefined;
      if (!handler) {
        throw new CommandError(
          'UNKNOWN_VERB',
          `unknown verb ${verb}; known: ${Object.keys(this.deps.verbs).join(', ')}`,
        );
      }
      // A bundle pushed over the LAN is thousands of update-chunk commands: not a journal line each.
      this.deps.log[verb === 'update-chunk' ? 'debug' : 'info']({ verb, id }, 'command');
      reply = { id, ok: true, result: await handler(command.data.args) };
    } catch (error) {
      const code = error instanceof CommandError ? error.code : 'FAILED';
      const message = error instanceof Error ? error.message : String(error);
      this.deps.log.warn({ verb, id, code, reason: message }, 'command refused or failed');
      reply = { id, ok: false, error: { code, message } };
    }
    this.deps.channel.publish(
      topics.reply(this.deps.site, this.deps.device, verb),
      { ...this.deps.channel.stamp(), ...reply },
      { qos: 1 },
    );
  }
}
