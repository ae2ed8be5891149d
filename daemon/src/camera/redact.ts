// A camera's secrets (the SRTP key's hex, an RTSP camera's password) never reach the log: GStreamer
// echoes a description it refuses, and its error text can carry a property value.

/** Replace every occurrence of each secret in `text` with `<redacted>`. */
export function redactSecrets(text: string, secrets: readonly string[]): string;
export function redactSecrets(text: string | undefined, secrets: readonly string[]): string | undefined;
export function redactSecrets(text: string | undefined, secrets: readonly string[]): string | undefined {
  if (text === undefined) return undefined;
  let scrubbed = text;
  for (const secret of secrets) if (secret !== '') scrubbed = scrubbed.replaceAll(secret, '<redacted>');
  return scrubbed;
}
