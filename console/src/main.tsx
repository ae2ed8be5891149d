// The site console: log in, then Live, Alerts, Chat and Devices, as the role allows (console and admin:
// everything; staff: chat and the alerts meant for everyone on site). Routes are the URL's hash, so the
// hub serves one page. `window.outpostConsole` lets the browser tests and bench:console look inside.
import { render } from 'preact';
import { useEffect, useLayoutEffect, useMemo, useState } from 'preact/hooks';
import {
  ApiError,
  currentSession,
  login,
  loginWithToken,
  logout,
  telemetryHistory,
  type SessionInfo,
} from './api.js';
import { Attention } from './attention.js';
import { markPage } from './marks.js';
import { formatTime, useSite } from './hooks.js';
import { Link, type Site } from './site.js';
import { Alerts, openPanics } from './views/Alerts.js';
import { Chat, unreadTotal } from './views/Chat.js';
import { Clips } from './views/Clips.js';
import { Devices } from './views/Devices.js';
import { Live, tileStats } from './views/Live.js';
import { verifiedClips } from './views/ClipPlayer.js';
import './style.css';

markPage('boot');

type Page = 'live' | 'alerts' | 'chat' | 'devices' | 'clips';

function pageFromHash(operator: boolean): Page {
  const page = location.hash.replace(/^#\/?/, '');
  if (page === 'alerts' || page === 'chat') return page;
  if (operator && (page === 'live' || page === 'devices' || page === 'clips')) return page;
  return operator ? 'live' : 'alerts';
}

function Login({ onLoggedIn, notice }: { onLoggedIn: (session: SessionInfo) => void; notice: string }) {
  const [error, setError] = useState(notice);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    setBusy(true);
    setError('');
    try {
      const field = (name: string) => {
        const value = form.get(name);
        return typeof value === 'string' ? value : '';
      };
      onLoggedIn(await login(field('username'), field('password')));
    } catch (failure) {
      setError((failure as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <h1>Outpost console</h1>
      <form onSubmit={(event) => void submit(event)}>
        <label for="username">User name</label>
        <input id="username" name="username" autocomplete="username" autocapitalize="none" required />
        <label for="password">Password</label>
        <input id="password" name="password" type="password" autocomplete="current-password" required />
        <button type="submit" disabled={busy}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
        <p class="error" role="alert" aria-live="assertive">
          {error}
        </p>
      </form>
      <p class="hint">Use the console or staff account your site's technician gave you.</p>
    </main>
  );
}

function Banner({ sites, attention }: { sites: Site[]; attention: Attention }) {
  const open = openPanics(sites);
  const [asked, setAsked] = useState(attention.notificationsAllowed);
  if (open.length === 0) return null;
  const newest = open[0];
  return (
    <div class="banner" role="alert">
      <strong>
        PANIC at {newest?.device}
        {open.length > 1 ? ` and ${open.length - 1} more` : ''}
      </strong>{' '}
      <span>not acknowledged since {newest ? formatTime(newest.firstAt) : ''}</span>{' '}
      <a href="#/alerts">Open alerts</a>
      {!asked && (
        <button
          type="button"
          class="secondary"
          onClick={() => {
            void attention.enableNotifications().then(() => setAsked(true));
          }}
        >
          Sound and notifications on
        </button>
      )}
    </div>
  );
}

/** At the operations centre: which site the pages show (every site for the inbox and devices). */
function SiteSwitcher({
  link,
  chosen,
  onChoose,
}: {
  link: Link;
  chosen: string;
  onChoose: (site: string) => void;
}) {
  return (
    <label class="site-switcher">
      <span>Site</span>{' '}
      <select value={chosen} onChange={(event) => onChoose(event.currentTarget.value)}>
        <option value={ALL}>All sites ({link.sites.size})</option>
        {link.list().map((site) => (
          <option key={site.name} value={site.name}>
            {site.name}
          </option>
        ))}
      </select>
    </label>
  );
}

/** Live at the centre: said plainly, no tiles that cannot play. */
function CentreLive() {
  return (
    <section class="centre-note" aria-labelledby="live-title">
      <h1 id="live-title">Live video stays on the sites</h1>
      <p>
        The operations centre never connects into a site: each site's hub dials out to the centre's broker and
        sends status, alerts, acknowledgements, telemetry, chat and clip manifests, not video. Watch a site's
        cameras on that site's own console.
      </p>
    </section>
  );
}

const ALL = '*';

function Console({ session, onLoggedOut }: { session: SessionInfo; onLoggedOut: (notice: string) => void }) {
  const link = useMemo(
    () => new Link(session, () => onLoggedOut('Your login ended: log in again.')),
    [session],
  );
  const attention = useMemo(() => new Attention(session.renotifyMinutes * 60_000), [session]);
  const [hashPage, setPage] = useState<Page>(pageFromHash(link.operator));
  // No clip archive at the centre: #/clips opens the inbox there.
  const page = session.centre && hashPage === 'clips' ? 'alerts' : hashPage;
  // At the centre: every site (ALL) or one; on a hub, its own site.
  const [chosen, setChosen] = useState(session.centre ? ALL : session.site);
  useSite(link);
  const sites = link.list();
  const shown = chosen === ALL ? sites : sites.filter((site) => site.name === chosen);
  const site = shown.length === 1 ? shown[0] : undefined;
  // A layout effect: connect as soon as the page is there, not after its first paint.
  useLayoutEffect(() => {
    link.connect();
    if (link.operator && !session.centre)
      void telemetryHistory().then(
        (history) => link.site(session.site).loadHistory(history.devices),
        () => undefined,
      );
    const onHash = () => setPage(pageFromHash(link.operator));
    window.addEventListener('hashchange', onHash);
    const debug = window as unknown as { outpostConsole?: object };
    debug.outpostConsole = { site: link, attention, tiles: tileStats, clips: verifiedClips };
    return () => {
      window.removeEventListener('hashchange', onHash);
      link.close();
      attention.stop();
    };
  }, [link]);
  const entries = sites.flatMap((each) => [...each.inbox.values()]);
  const panics = openPanics(sites);
  useEffect(
    () => attention.update(panics),
    [panics.length, entries.length, entries.filter((e) => e.ack).length],
  );
  const unread = shown.reduce((sum, each) => sum + unreadTotal(each), 0);
  const tabs: Array<[Page, string]> = link.operator
    ? [
        ['live', 'Live'],
        ['alerts', 'Alerts'],
        ...(session.centre ? [] : [['clips', 'Clips'] as [Page, string]]),
        ['chat', 'Chat'],
        ['devices', 'Devices'],
      ]
    : [
        ['alerts', 'Alerts'],
        ['chat', 'Chat'],
      ];
  const openCount = shown
    .flatMap((each) => [...each.inbox.values()])
    .filter((entry) => !entry.ack && entry.alert.state === 'raised').length;
  return (
    <>
      <header class="top">
        <span class="brand">
          Outpost · {session.centre ? `${session.site} (operations centre)` : session.site}
        </span>
        {session.centre && <SiteSwitcher link={link} chosen={chosen} onChoose={setChosen} />}
        <nav aria-label="Pages">
          {tabs.map(([id, label]) => (
            <a key={id} href={`#/${id}`} aria-current={page === id ? 'page' : undefined}>
              {label}
              {id === 'alerts' && openCount > 0 && (
                <span class="count" aria-label={`${openCount} open`}>
                  {openCount}
                </span>
              )}
              {id === 'chat' && unread > 0 && (
                <span class="count" aria-label={`${unread} unread`}>
                  {unread}
                </span>
              )}
            </a>
          ))}
        </nav>
        <span class={`connection ${link.connection}`} role="status">
          {link.connection === 'online'
            ? 'live'
            : link.connection === 'connecting'
              ? 'connecting…'
              : 'reconnecting…'}
        </span>
        <span class="who">
          {session.username} ({session.role})
        </span>
        <button
          type="button"
          class="secondary"
          onClick={() => {
            void logout().finally(() => onLoggedOut('Logged out.'));
          }}
        >
          Log out
        </button>
      </header>
      <Banner sites={sites} attention={attention} />
      <main id="main">
        {page === 'live' && (session.centre ? <CentreLive /> : site && <Live site={site} />)}
        {page === 'alerts' && <Alerts sites={shown} showSite={session.centre} />}
        {page === 'chat' &&
          (site ? (
            <Chat key={site.name} site={site} />
          ) : (
            <p class="empty">Chat is per site: choose a site above.</p>
          ))}
        {page === 'devices' &&
          (session.centre
            ? shown.map((each) => <Devices key={each.name} site={each} title={`Devices · ${each.name}`} />)
            : site && <Devices site={site} />)}
        {page === 'devices' && session.centre && shown.length === 0 && (
          <p class="empty">No site has reported yet.</p>
        )}
        {page === 'clips' && !session.centre && <Clips />}
      </main>
    </>
  );
}

function App() {
  const [session, setSession] = useState<SessionInfo | undefined>(undefined);
  const [checking, setChecking] = useState(true);
  const [notice, setNotice] = useState('');
  useLayoutEffect(() => {
    // The development login link (`npm start`): #login=TOKEN, used once and removed from the address bar.
    const token = /^#login=([A-Za-z0-9_-]+)$/.exec(location.hash)?.[1];
    if (token) history.replaceState(null, '', `${location.pathname}#/live`);
    (token ? loginWithToken(token) : currentSession())
      .then(
        (info) => {
          markPage('session');
          setSession(info);
        },
        (error: unknown) => {
          if (!(error instanceof ApiError && error.status === 401)) setNotice((error as Error).message);
          else if (token) setNotice(error.message);
        },
      )
      .finally(() => setChecking(false));
  }, []);
  if (checking) return <p class="loading">Loading…</p>;
  if (!session)
    return (
      <Login
        notice={notice}
        onLoggedIn={(info) => {
          setNotice('');
          setSession(info);
        }}
      />
    );
  return (
    <Console
      key={session.username}
      session={session}
      onLoggedOut={(text) => {
        setNotice(text);
        setSession(undefined);
      }}
    />
  );
}

const root = document.getElementById('app');
if (root) render(<App />, root);
