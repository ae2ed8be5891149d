// Pipelines are data: a GStreamer pipeline is a typed list of elements, caps and pads, turned into a
// gst-launch description by `renderPipeline`, the one function that quotes and escapes. Nothing else
// concatenates strings into a pipeline, so a hostile config value (a device path with `!` in it, say)
// can only ever be a property value, never a new element. This room knows GStreamer, not cameras or
// clips: camera/pipeline.ts and clips/mux.ts build their graphs from these links.
import { OutpostError } from '../errors.js';

export interface Fraction {
  num: number;
  den: number;
}
/**
 * A GstBuffer value (srtpenc's `key`, srtpdec's `srtp-key` caps field). GStreamer deserialises a
 * buffer from a bare hex string (gst_value_deserialize_buffer), so it renders as lowercase hex: only
 * [0-9a-f], nothing to quote. It is also the one kind of value that is secret: a redacted render
 * (for logs) shows `<redacted>` instead.
 */
export interface Bytes {
  bytes: Uint8Array;
}
/** A string that is a secret (an RTSP camera's password): quoted as usual, `<redacted>` in a redacted render. */
export interface Secret {
  secret: string;
}
export type Value = string | number | boolean | Fraction | Bytes | Secret;

export interface RenderOptions {
  /** Render Bytes and Secret values as `<redacted>`: for log lines, never for GStreamer. */
  redact?: boolean;
}

export interface ElementLink {
  kind: 'element';
  factory: string;
  name?: string;
  props?: Readonly<Record<string, Value | undefined>>;
}

export interface CapsLink {
  kind: 'caps';
  /** e.g. `video/x-raw` */
  media: string;
  fields: Readonly<Record<string, Value>>;
}

/** A named element's pad (`rtpbin.send_rtp_src_0`): where chains of a non-linear pipeline meet. */
export interface PadLink {
  kind: 'pad';
  element: string;
  pad: string;
}

export type Link = ElementLink | CapsLink | PadLink;

/** One linear chain, or several chains joined through named elements' pads. */
export type Graph = readonly Link[] | readonly (readonly Link[])[];

const IDENTIFIER = /^[a-z][a-z0-9_-]*$/i;
const MEDIA_TYPE = /^[a-z]+\/[a-z0-9.+-]+$/i;
/** Caps string values are short tokens (NV12, constrained-baseline); anything else is refused. */
const CAPS_TOKEN = /^[A-Za-z0-9_.+-]+$/;
// eslint-disable-next-line no-control-regex -- control characters are exactly what this rejects
const CONTROL = /[\u0000-\u001f\u007f]/;

export function element(factory: string, props?: ElementLink['props'], name?: string): ElementLink {
  return name === undefined ? { kind: 'element', factory, props } : { kind: 'element', factory, props, name };
}

export function caps(media: string, fields: CapsLink['fields']): CapsLink {
  return { kind: 'caps', media, fields };
}

export function pad(elementName: string, padName: string): PadLink {
  return { kind: 'pad', element: elementName, pad: padName };
}

/** Element and pad names in a pad reference are written bare, so they are held to this. */
const PAD_PART = /^[a-z][a-z0-9_]*$/i;

/** Render a linear chain as a gst-launch description. Throws PIPELINE_INVALID on anything unsafe. */
export function renderPipeline(graph: Graph, options: RenderOptions = {}): string {
  if (graph.length === 0) throw invalid('a pipeline needs at least one element');
  const chains = isChainList(graph) ? graph : [graph];
  return chains.map((chain) => renderChain(chain, options)).join(' ');
}

function isChainList(graph: Graph): graph is readonly (readonly Link[])[] {
  return Array.isArray(graph[0]);
}

function renderChain(chain: readonly Link[], options: RenderOptions): string {
  if (chain.length === 0) throw invalid('a pipeline needs at least one element');
  return chain
    .map((link, index) => {
      if (link.kind === 'element') return renderElement(link, options);
      if (link.kind === 'caps') return renderCaps(link, options);
      // A pad reference can only start or end a chain: anywhere else gst-launch would read it as a link
      // through an element, which is never what we mean.
      if (index !== 0 && index !== chain.length - 1)
        throw invalid('a pad reference must start or end a chain');
      if (!PAD_PART.test(link.element) || !PAD_PART.test(link.pad))
        throw invalid(`bad pad reference ${JSON.stringify(`${link.element}.${link.pad}`)}`);
      return `${link.element}.${link.pad}`;
    })
    .join(' ! ');
}

function renderElement(link: ElementLink, options: RenderOptions): string {
  if (!IDENTIFIER.test(link.factory))
    throw invalid(`bad element factory name ${JSON.stringify(link.factory)}`);
  const parts = [link.factory];
  if (link.name !== undefined) parts.push(`name=${quote(link.name)}`);
  for (const [key, value] of Object.entries(link.props ?? {})) {
    if (value === undefined) continue;
    if (!IDENTIFIER.test(key)) throw invalid(`bad property name ${JSON.stringify(key)} on ${link.factory}`);
    parts.push(`${key}=${renderValue(value, `${link.factory}.${key}`, options)}`);
  }
  return parts.join(' ');
}

function renderCaps(link: CapsLink, options: RenderOptions): string {
  if (!MEDIA_TYPE.test(link.media)) throw invalid(`bad caps media type ${JSON.stringify(link.media)}`);
  const fields = Object.entries(link.fields).map(([key, value]) => {
    if (!IDENTIFIER.test(key)) throw invalid(`bad caps field name ${JSON.stringify(key)}`);
    if (typeof value === 'string') {
      if (!CAPS_TOKEN.test(value))
        throw invalid(`caps field ${key} has unsafe value ${JSON.stringify(value)}`);
      return `${key}=(string)${value}`;
    }
    if (typeof value === 'number') return `${key}=(int)${integer(value, key)}`;
    if (typeof value === 'boolean') return `${key}=(boolean)${value}`;
    if ('bytes' in value) return `${key}=(buffer)${hex(value, key, options)}`;
    if ('secret' in value) throw invalid(`caps field ${key} cannot hold a secret`);
    return `${key}=(fraction)${integer(value.num, key)}/${integer(value.den, key)}`;
  });
  return [link.media, ...fields].join(',');
}

function renderValue(value: Value, where: string, options: RenderOptions): string {
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw invalid(`${where} is not a finite number`);
    return String(value);
  }
  if (typeof value === 'object') {
    if ('bytes' in value) return hex(value, where, options);
    if ('secret' in value) {
      if (CONTROL.test(value.secret) || value.secret.endsWith('\\'))
        // Never repeat a secret in an error message.
        throw invalid(`${where} contains a control character or ends with a backslash; change it`);
      return options.redact ? '<redacted>' : quote(value.secret);
    }
    return `${integer(value.num, where)}/${integer(value.den, where)}`;
  }
  return quote(value);
}

function hex(value: Bytes, where: string, options: RenderOptions): string {
  if (!(value.bytes instanceof Uint8Array) || value.bytes.length === 0)
    throw invalid(`${where} needs at least one byte`);
  return options.redact ? '<redacted>' : Buffer.from(value.bytes).toString('hex');
}

/**
 * gst-launch unescapes `\x` to `x`, so escaping `\` and `"` keeps a value's characters. But its lexer
 * (parse.l, 1.22) reads a double-quoted string as `"([^"]|\\")*"` with flex's longest match: a `\`
 * right before the closing quote can also be read as an escaped quote, and the string then runs on to
 * the next `"` in the description, so the rest is tokenised anew (a user name ending in `\` followed by
 * a password holding ` ! filesink …` would inject an element). A value ending in a backslash is
 * therefore refused, like control characters (a newline ends a token).
 */
export function quote(value: string): string {
  if (CONTROL.test(value)) throw invalid(`value ${JSON.stringify(value)} contains a control character`);
  if (value.endsWith('\\'))
    throw invalid(`value ${JSON.stringify(value)} ends with a backslash, which GStreamer cannot quote`);
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

function integer(value: number, where: string): number {
  if (!Number.isSafeInteger(value)) throw invalid(`${where} must be a whole number, got ${value}`);
  return value;
}

function invalid(message: string): OutpostError {
  return new OutpostError('PIPELINE_INVALID', `pipeline: ${message}`, {
    hint: 'this is a bug or a config value GStreamer cannot take; check the camera settings',
  });
}

/** PIPELINE_INVALID, for a graph builder that finds its input cannot make a pipeline. */
export { invalid as invalidPipeline };
