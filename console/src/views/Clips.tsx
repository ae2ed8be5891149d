// Clips: every clip the hub's archive holds, from any box, newest first, including those made while
// this console was closed. Each is fetched, checked and played on request.
import { useEffect, useState } from 'preact/hooks';
import type { ArchivedClip } from '../../../daemon/src/mqtt/contract.js';
import { formatTime } from '../hooks.js';
import { ClipPlayer } from './ClipPlayer.js';

export function Clips() {
  const [clips, setClips] = useState<ArchivedClip[] | undefined>(undefined);
  const [error, setError] = useState('');
  const refresh = () =>
    fetch('/api/clips', { credentials: 'same-origin' })
      .then(async (response) => {
        if (!response.ok) throw new Error(`the hub answers ${response.status}`);
        setClips(((await response.json()) as { clips: ArchivedClip[] }).clips);
        setError('');
      })
      .catch((failure: unknown) => setError((failure as Error).message));
  useEffect(() => {
    void refresh();
    const timer = window.setInterval(() => void refresh(), 10_000);
    return () => window.clearInterval(timer);
  }, []);
  return (
    <section class="clips" aria-labelledby="clips-title">
      <div class="toolbar">
        <h1 id="clips-title">Clips</h1>
        <button type="button" class="secondary" onClick={() => void refresh()}>
          Refresh
        </button>
      </div>
      {error && <p class="problem">{error}</p>}
      {clips?.length === 0 && <p class="empty">No clips at the hub.</p>}
      <ul class="inbox">
        {clips?.map((clip) => (
          <li key={`${clip.device}/${clip.clipId}`} class="alert">
            <div class="line">
              <strong>{clip.device}</strong>
              <span>{clip.cameras.join(', ')}</span>
              <time dateTime={new Date(clip.startAt ?? clip.storedAt).toISOString()}>
                {formatTime(clip.startAt ?? clip.storedAt)}
              </time>
              <span>{clip.durationMs === null ? '' : `${(clip.durationMs / 1000).toFixed(1)} s`}</span>
              <span>{(clip.sizeBytes / 1_000_000).toFixed(1)} MB</span>
              {clip.acknowledged && <span class="cleared">acknowledged</span>}
            </div>
            <ClipPlayer device={clip.device} clipId={clip.clipId} sha256={clip.sha256} auto={false} />
          </li>
        ))}
      </ul>
    </section>
  );
}
