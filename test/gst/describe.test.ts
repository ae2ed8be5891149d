// Pipeline descriptions (gst/describe.ts): values are quoted and escaped so that no config string can
// add elements. The proof is GStreamer's own parser, not a regex.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { caps, element, pad, quote, renderPipeline } from '../../daemon/src/gst/describe.js';
import { parseAndRun } from '../support/gst.js';
import { tempDir } from '../support/processes.js';

describe('pipeline descriptions', () => {
  it('quotes and escapes string values', () => {
    expect(quote('plain')).toBe('"plain"');
    expect(quote('a "b" \\c')).toBe('"a \\"b\\" \\\\c"');
    expect(() => quote('line\nbreak')).toThrow(/control character/);
  });

  it('a hostile value stays a property value: no element is injected', async () => {
    const dir = await tempDir();
    const pwned = join(dir, 'pwned');
    for (const hostile of [
      `x" ! filesink location="${pwned}`,
      `x\\" ! filesink location=${pwned}`,
      `/dev/video0 ! filesink location=${pwned}`,
    ]) {
      const description = renderPipeline([
        element('fakesrc', { 'num-buffers': 1 }),
        element('fakesink', { 'last-message': undefined }, hostile),
      ]);
      const result = parseAndRun(description, [hostile]);
      expect(result.status, `${description}\n${result.stderr}`).toBe(0);
      // The whole hostile string became the sink's name, and no filesink ran.
      expect(result.stdout).toBe(`found ${hostile}\n`);
      expect(existsSync(pwned), description).toBe(false);
    }
  });

  it('refuses a value ending in a backslash: its closing quote would read as escaped, and the next value would run on', () => {
    expect(() => quote('x\\')).toThrow(/ends with a backslash/);
    // Two values a config controls (an RTSP user name and password): the first ending in `\` would
    // let the second's text become elements.
    expect(() =>
      renderPipeline([
        element('fakesrc', { 'num-buffers': 1 }),
        element('fakesink', {
          silent: `a\\`,
          'last-message': '" ! filesink location=/tmp/x ! fakesink name="',
        }),
      ]),
    ).toThrow(/ends with a backslash/);
    expect(() => renderPipeline([element('rtspsrc', { 'user-pw': { secret: 'hunter2\\' } })])).toThrow(
      /^pipeline: rtspsrc.user-pw contains a control character or ends with a backslash; change it$/,
    );
  });

  it('refuses unsafe names and caps values instead of escaping them', () => {
    expect(() => renderPipeline([element('fakesrc ! filesink', {})])).toThrow(/bad element factory/);
    expect(() => renderPipeline([element('fakesrc', { 'a b': 1 })])).toThrow(/bad property name/);
    expect(() => renderPipeline([caps('video/x-raw', { format: 'NV12,width=1' })])).toThrow(/unsafe value/);
    expect(() => renderPipeline([element('fakesrc', { 'num-buffers': Number.NaN })])).toThrow(/finite/);
    expect(() => renderPipeline([])).toThrow(/at least one element/);
    expect(() => renderPipeline([element('fakesrc'), pad('tee', 'src_0'), element('fakesink')])).toThrow(
      /must start or end a chain/,
    );
    expect(() =>
      renderPipeline([[pad('rtpbin', 'send_rtp_src_0 ! filesink')], [element('fakesink')]]),
    ).toThrow(/bad pad reference/);
  });
});
