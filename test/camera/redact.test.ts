// A camera's secrets never reach its log lines or status, whatever GStreamer echoes back.
import { describe, expect, it } from 'vitest';
import { redactSecrets } from '../../daemon/src/camera/redact.js';

describe('secret redaction', () => {
  it('replaces every occurrence of every secret, and nothing else', () => {
    expect(redactSecrets('rtspsrc user-pw="hunter2" … key=abcd hunter2', ['hunter2', 'abcd'])).toBe(
      'rtspsrc user-pw="<redacted>" … key=<redacted> <redacted>',
    );
    expect(redactSecrets(undefined, ['hunter2'])).toBeUndefined();
    // An empty password is no secret to scrub (replacing '' would mangle the whole text).
    expect(redactSecrets('camera failed', [''])).toBe('camera failed');
  });
});
