// A clip in the page: fetched from the hub's archive (same origin, behind the login), its sha256
// computed here with WebCrypto and compared with the box's manifest, and only then played and
// offered for download, marked "verified". A clip that does not match is not played.
import { useEffect, useState } from 'preact/hooks';

type Check =
  | { state: 'idle' }
  | { state: 'loading' }
  | { state: 'verified'; url: string; bytes: number }
  | { state: 'mismatch' | 'error'; reason: string };

/** What the tests and bench:console read: when each clip became playable and verified. */
export const verifiedClips = new Map<string, { at: number; duration: number | undefined }>();

function hex(buffer: ArrayBuffer): string {
  return [...new Uint8Array(buffer)].map((byte) => byte.toString(16).padStart(2, '0')).join('');
}

export function ClipPlayer(props: {
  device: string;
  clipId: string;
  sha256: string | null;
  /** Fetch and check at once (a fresh panic), or wait for a click (the archive's older clips). */
  auto: boolean;
}) {
  const { device, clipId, sha256 } = props;
  const [check, setCheck] = useState<Check>({ state: 'idle' });
  const load = async () => {
    setCheck({ state: 'loading' });
    try {
      const response = await fetch(`/api/clips/${device}/${clipId}.mp4`, { credentials: 'same-origin' });
      if (!response.ok) throw new Error(`the hub answers ${response.status}`);
      const bytes = await response.arrayBuffer();
      const digest = hex(await crypto.subtle.digest('SHA-256', bytes));
      if (!sha256 || digest !== sha256) {
        setCheck({
          state: 'mismatch',
          reason: `sha256 ${digest.slice(0, 12)}… does not match the box's ${sha256?.slice(0, 12) ?? '(none)'}…`,
        });
        return;
      }
      setCheck({
        state: 'verified',
        url: URL.createObjectURL(new Blob([bytes], { type: 'video/mp4' })),
        bytes: bytes.byteLength,
      });
    } catch (error) {
      setCheck({ state: 'error', reason: (error as Error).message });
    }
  };
  useEffect(() => {
    if (props.auto && sha256) void load();
  }, [props.auto, sha256]);
  useEffect(
    () => () => {
      if (check.state === 'verified') URL.revokeObjectURL(check.url);
    },
    [check],
  );
  if (check.state === 'idle')
    return (
      <button type="button" class="secondary" onClick={() => void load()} disabled={!sha256}>
        Load clip
      </button>
    );
  if (check.state === 'loading') return <span class="clip-status">fetching and checking the clip…</span>;
  if (check.state !== 'verified')
    return (
      <span class="problem">
        clip not played: {check.reason}{' '}
        <button type="button" class="secondary" onClick={() => void load()}>
          Try again
        </button>
      </span>
    );
  const key = `${device}/${clipId}`;
  return (
    <div class="clip" data-clip={key}>
      <video
        src={check.url}
        controls
        muted
        playsInline
        preload="metadata"
        aria-label={`Clip ${clipId} from ${device}`}
        onLoadedMetadata={(event) =>
          verifiedClips.set(key, {
            at: performance.now(),
            duration: event.currentTarget.duration,
          })
        }
      />
      <span class="verified">verified (sha256 matches the box's)</span>{' '}
      <a href={check.url} download={`${device}-${clipId}.mp4`}>
        Download ({(check.bytes / 1_000_000).toFixed(1)} MB)
      </a>
    </div>
  );
}
