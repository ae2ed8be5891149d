// Alerts: the hub's inbox, newest first. Severity, box, cameras, time, message; open or cleared; who
// acknowledged it and when (stamped by the broker). Operators acknowledge; everyone sees it within a
// moment, because the inbox entry is retained and updated at the hub.
import { useState } from 'preact/hooks';
import { formatTime } from '../hooks.js';
import type { InboxEntryPayload, Site } from '../site.js';
import { ClipPlayer } from './ClipPlayer.js';

/** A panic alert's clip: its progress at the hub, then the clip itself (fetched and checked here). */
function ClipOfAlert({ entry, site }: { entry: InboxEntryPayload; site: Site }) {
  const clip = entry.clip;
  const clipId = entry.alert.clipId;
  if (!clip || !clipId) return null;
  if (clip.state === 'waiting') return <p class="clip-status">clip: being recorded at {entry.device}…</p>;
  if (clip.state === 'receiving') {
    const done = clip.of ? Math.floor((100 * clip.have) / Math.max(1, clip.of)) : 0;
    return (
      <p class="clip-status">
        clip: arriving at the hub{' '}
        <progress max={clip.of ?? 1} value={clip.have} aria-label={`clip ${done} % received`}>
          {done} %
        </progress>{' '}
        {clip.have}/{clip.of ?? '?'}
      </p>
    );
  }
  if (clip.state === 'failed')
    return <p class="problem">clip: the box could not make it ({clip.message ?? 'no reason given'})</p>;
  if (clip.state === 'evicted')
    return <p class="clip-status">clip: removed from the hub by its storage quota</p>;
  if (!site.operator) return <p class="clip-status">clip stored at the hub</p>;
  // Clips stay on the site (only their manifest crosses to the centre): nothing here to play.
  if (site.session.centre)
    return (
      <p class="clip-status">
        clip stored at {site.name}'s hub ({Math.round((clip.sizeBytes ?? 0) / 1024)} KB, sha256{' '}
        {clip.sha256?.slice(0, 12) ?? '?'}…): play it on the site's console; clips do not cross to the centre
        unless asked for
      </p>
    );
  // A fresh or open panic plays at once; older ones on request.
  const fresh = !entry.ack || Date.now() - entry.firstAt < 3600_000;
  return <ClipPlayer device={entry.device} clipId={clipId} sha256={clip.sha256} auto={fresh} />;
}

/** Every entry of these sites' inboxes (one site on a hub; at the centre, one or all), newest first. */
export function sortedInbox(sites: Site[]): Array<{ site: Site; entry: InboxEntryPayload }> {
  return sites
    .flatMap((site) => [...site.inbox.values()].map((entry) => ({ site, entry })))
    .sort((a, b) => b.entry.firstAt - a.entry.firstAt || b.entry.alert.at - a.entry.alert.at);
}

/** Panic alerts nobody has acknowledged: they keep drawing attention. */
export function openPanics(sites: Site[]): InboxEntryPayload[] {
  return sortedInbox(sites)
    .map(({ entry }) => entry)
    .filter((entry) => entry.alert.kind === 'panic' && !entry.ack && entry.alert.state === 'raised');
}

/** Who acknowledged: a person on the site, or (through the bridge) an operator at the centre. */
export function acknowledger(ack: NonNullable<InboxEntryPayload['ack']>): string {
  return ack.operator ? `${ack.operator} at the centre` : ack.by;
}

const KIND: Record<string, string> = {
  panic: 'Panic',
  'clip-failed': 'Clip failed',
  'camera-failed': 'Camera failed',
  temperature: 'Temperature',
  disk: 'Disk',
  memory: 'Memory',
  'clip-store': 'Clip storage',
};

function Entry({ entry, site, showSite }: { entry: InboxEntryPayload; site: Site; showSite: boolean }) {
  const [sending, setSending] = useState(false);
  const { alert } = entry;
  const urgent = alert.kind === 'panic' && !entry.ack && alert.state === 'raised';
  return (
    <li
      class={`alert ${alert.severity} ${entry.ack ? 'acked' : 'open'} ${urgent ? 'urgent' : ''}`}
      data-alert={alert.id}
      data-site={site.name}
    >
      <div class="line">
        <span class={`severity ${alert.severity}`}>{alert.severity}</span>
        {showSite && <span class="site-name">{site.name}</span>}
        <strong>{KIND[alert.kind] ?? alert.kind}</strong>
        <span>{entry.device}</span>
        {alert.cameras && alert.cameras.length > 0 && <span>{alert.cameras.join(', ')}</span>}
        <time dateTime={new Date(alert.at).toISOString()}>{formatTime(alert.at)}</time>
        {alert.state === 'cleared' && <span class="cleared">cleared</span>}
      </div>
      <p class="message">{alert.message}</p>
      <ClipOfAlert entry={entry} site={site} />
      <div class="ack">
        {entry.ack ? (
          <span class="acked-by">
            acknowledged by {acknowledger(entry.ack)} at {formatTime(entry.ack.at)}
          </span>
        ) : site.operator ? (
          <button
            type="button"
            disabled={
              sending || site.connection !== 'online' || site.provisional.has(`${entry.device}/${entry.key}`)
            }
            onClick={() => {
              setSending(true);
              site.acknowledge(entry);
            }}
          >
            {sending ? 'Acknowledging…' : 'Acknowledge'}
          </button>
        ) : (
          <span class="waiting">not acknowledged yet</span>
        )}
      </div>
    </li>
  );
}

/** The inbox of one site, or at the centre of several (each entry names its site). */
export function Alerts({ sites, showSite = false }: { sites: Site[]; showSite?: boolean }) {
  const [showAcked, setShowAcked] = useState(true);
  const entries = sortedInbox(sites).filter(({ entry }) => showAcked || !entry.ack);
  return (
    <section class="alerts" aria-labelledby="alerts-title">
      <div class="toolbar">
        <h1 id="alerts-title">Alerts</h1>
        <label>
          <input
            type="checkbox"
            checked={showAcked}
            onChange={(event) => setShowAcked(event.currentTarget.checked)}
          />{' '}
          show acknowledged
        </label>
      </div>
      {entries.length === 0 ? (
        <p class="empty">No alerts.</p>
      ) : (
        <ul class="inbox" aria-live="polite">
          {entries.map(({ site, entry }) => (
            <Entry
              key={`${site.name}/${entry.device}/${entry.key}`}
              entry={entry}
              site={site}
              showSite={showSite}
            />
          ))}
        </ul>
      )}
    </section>
  );
}
