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
import { Site } from './site.js';
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

function Banner({ site, attention }: { site: Site; attention: Attention }) {
  const open = openPanics(site);
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

function Console({ session, onLoggedOut }: { session: SessionInfo; onLoggedOut: (notice: string) => void }) {
  const site = useMemo(
    () => new Site(session, () => onLoggedOut('Your login ended: log in again.')),
    [session],
  );
  const attention = useMemo(() => new Attention(session.renotifyMinutes * 60_000), [session]);
  const [page, setPage] = useState<Page>(pageFromHash(site.operator));
  useSite(site);
  // A layout effect: connect as soon as the page is there, not after its first paint.
  useLayoutEffect(() => {
    site.connect();
    if (site.operator)
      void telemetryHistory().then(
        (history) => site.loadHistory(history.devices),
        () => undefined,
      );
    const onHash = () => setPage(pageFromHash(site.operator));
    window.addEventListener('hashchange', onHash);
    const debug = window as unknown as { outpostConsole?: object };
    debug.outpostConsole = { site, attention, tiles: tileStats, clips: verifiedClips };
    return () => {
      window.removeEventListener('hashchange', onHash);
      site.close();
      attention.stop();
    };
  }, [site]);
  const panics = openPanics(site);
  useEffect(
    () => attention.update(panics),
    [panics.length, site.inbox.size, [...site.inbox.values()].filter((e) => e.ack).length],
  );
  const unread = unreadTotal(site);
  const tabs: Array<[Page, string]> = site.operator
    ? [
        ['live', 'Live'],
        ['alerts', 'Alerts'],
        ['clips', 'Clips'],
        ['chat', 'Chat'],
        ['devices', 'Devices'],
      ]
    : [
        ['alerts', 'Alerts'],
        ['chat', 'Chat'],
      ];
  const openCount = [...site.inbox.values()].filter(
    (entry) => !entry.ack && entry.alert.state === 'raised',
  ).length;
  return (
    <>
      <header class="top">
        <span class="brand">Outpost · {session.site}</span>
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
        <span class={`connection ${site.connection}`} role="status">
          {site.connection === 'online'
            ? 'live'
            : site.connection === 'connecting'
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
      <Banner site={site} attention={attention} />
      <main id="main">
        {page === 'live' && <Live site={site} />}
        {page === 'alerts' && <Alerts site={site} />}
        {page === 'chat' && <Chat site={site} />}
        {page === 'devices' && <Devices site={site} />}
        {page === 'clips' && <Clips />}
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
