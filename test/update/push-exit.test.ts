// `outpost update push`'s exit status says why boxes did not take the bundle: a refusal's own status
// when every box that did not commit refused for the same reason (as `outpost update install` would).
import { describe, expect, it } from 'vitest';
import { pushExitCode } from '../../daemon/src/update/cli.js';
import type { PushResult } from '../../daemon/src/update/push.js';

const result = (outcome: PushResult['outcome'], code: string | null = null): PushResult => ({
  device: 'cam-gate',
  outcome,
  version: '1.0.0',
  reason: code ? `refused: ${code}` : null,
  code,
});

describe('outpost update push exit status', () => {
  it('is 0 when every box committed, or has the bundle with --no-wait', () => {
    expect(pushExitCode([result('committed'), result('sent')])).toBe(0);
  });

  it("is the refusal's own status when the boxes refused for one reason", () => {
    expect(pushExitCode([result('refused', 'UPDATE_SIGNATURE_INVALID')])).toBe(21);
    expect(pushExitCode([result('refused', 'UPDATE_UNTRUSTED'), result('committed')])).toBe(22);
    expect(
      pushExitCode([result('refused', 'UPDATE_WRONG_ARCH'), result('refused', 'UPDATE_WRONG_ARCH')]),
    ).toBe(23);
    expect(pushExitCode([result('refused', 'UPDATE_OLDER')])).toBe(25);
    expect(pushExitCode([result('refused', 'UPDATE_UNSUPPORTED')])).toBe(28);
    expect(pushExitCode([result('error', 'UPDATE_TRANSFER_FAILED')])).toBe(29);
  });

  it('is 26 for a rollback, a failure without a code, or boxes that failed for different reasons', () => {
    expect(pushExitCode([result('rolled-back')])).toBe(26);
    expect(pushExitCode([result('error')])).toBe(26);
    expect(pushExitCode([result('refused', 'UPDATE_OLDER'), result('refused', 'UPDATE_WRONG_ARCH')])).toBe(
      26,
    );
  });
});
