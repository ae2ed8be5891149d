// Who may publish and subscribe where: the broker's authorizePublish/authorizeSubscribe hooks ask these
// two functions, with the authenticated identity (never the client id or a payload field).
//
//   device d  publishes  P/d/#, P/chat/+          subscribes  P/d/cmd/#, P/chat/#
//   console   publishes  P/+/cmd/#, P/chat/+,     subscribes  P/# (everything on the site)
//                        P/inbox/+/+/+/ack
//   staff     publishes  P/chat/+                 subscribes  P/chat/#, P/inbox/site/#
//   admin     publishes  anything not starting with $   subscribes  anything
// where P = outpost/v1/{site}. A subscription is granted only when every topic it could match is
// allowed: `#`, `$SYS/#` and another device's prefix are refused, and so is `outpost/v1/+/…`.
// `$` topics are the broker's ($SYS: Aedes's own; $outpost/refused: where refused publishes go): no
// client publishes there, admin included (MQTT 3.1.1 §4.7.2: the server SHOULD prevent clients from
// using them to exchange messages).
// Chat is published on `P/chat/{channel}` only: `P/chat/{channel}/history` is written by the broker.
import type { Identity } from './identities.js';
import { sitePrefix } from './topics.js';

export function mayPublish(identity: Identity, site: string, topic: string): boolean {
  if (topic.startsWith('$')) return false;
  return publishPatterns(identity, site).some((pattern) => topicMatches(pattern, topic));
}

export function maySubscribe(identity: Identity, site: string, filter: string): boolean {
  if (identity.role === 'admin') return true;
  return subscribePatterns(identity, site).some((pattern) => filterWithin(filter, pattern));
}

/**
 * What an identity may receive, for the broker's authorizeForward, which runs once per delivered
 * message and so must be cheap. Every subscribe pattern above is `#` or `{base}/#` without `+`, and a
 * concrete topic is within `{base}/#` exactly when it is `{base}` or starts with `{base}/`: two
 * string comparisons per pattern, no split, no allocation. Built once per client at CONNECT.
 */
export class ReadScope {
  private constructor(
    /** undefined: everything (admin). */
    private readonly bases: readonly string[] | undefined,
  ) {}

  static of(identity: Identity, site: string): ReadScope {
    const patterns = subscribePatterns(identity, site);
    if (patterns.includes('#')) return new ReadScope(undefined);
    return new ReadScope(
      patterns.map((pattern) => {
        if (!pattern.endsWith('/#') || pattern.includes('+'))
          throw new Error(`read scope: ${pattern} is not of the form base/#`);
        return pattern.slice(0, -2);
      }),
    );
  }

  /** A scope that allows nothing: a client whose identity was revoked or changed, until it is gone. */
  static readonly NOTHING = new ReadScope([]);

  allows(topic: string): boolean {
    const bases = this.bases;
    if (bases === undefined) return true;
    for (const base of bases) {
      if (topic.startsWith(base) && (topic.length === base.length || topic.charCodeAt(base.length) === 47))
        return true;
    }
    return false;
  }
}

function publishPatterns(identity: Identity, site: string): string[] {
  const prefix = sitePrefix(site);
  switch (identity.role) {
    case 'device':
      return [`${prefix}/${identity.name}/#`, `${prefix}/chat/+`];
    case 'console':
      return [`${prefix}/+/cmd/#`, `${prefix}/chat/+`, `${prefix}/inbox/+/+/+/ack`];
    case 'staff':
      return [`${prefix}/chat/+`];
    case 'admin':
      return ['#'];
  }
}

function subscribePatterns(identity: Identity, site: string): string[] {
  const prefix = sitePrefix(site);
  switch (identity.role) {
    case 'device':
      return [`${prefix}/${identity.name}/cmd/#`, `${prefix}/chat/#`];
    case 'console':
      return [`${prefix}/#`];
    case 'staff':
      // The alerts meant for everyone on the site (panic, clip-failed): the hub's inbox writes them here.
      return [`${prefix}/chat/#`, `${prefix}/inbox/site/#`];
    case 'admin':
      return ['#'];
  }
}

/** MQTT topic matching of a concrete topic against a filter with + and # (MQTT 3.1.1 §4.7). */
export function topicMatches(filter: string, topic: string): boolean {
  const want = filter.split('/');
  const have = topic.split('/');
  for (let i = 0; i < want.length; i += 1) {
    const level = want[i];
    if (level === '#') return true; // also matches the parent level itself (§4.7.1.2)
    if (i >= have.length) return false;
    if (level !== '+' && level !== have[i]) return false;
  }
  return want.length === have.length;
}

/** True when every topic `filter` can match is also matched by `allowed`. */
export function filterWithin(filter: string, allowed: string): boolean {
  const inner = filter.split('/');
  const outer = allowed.split('/');
  for (let i = 0; i < outer.length; i += 1) {
    const limit = outer[i];
    if (limit === '#') return true;
    const level = inner[i];
    if (level === undefined) return false;
    if (level === '#') return false; // the filter reaches further than the allowed level
    if (level === '+' && limit !== '+') return false;
    if (limit !== '+' && limit !== level) return false;
  }
  return inner.length === outer.length;
}
