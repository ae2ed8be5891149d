// Chat: channels with their history (kept by the hub), unread counts and a box to send. The sender of
// each message is the broker's stamp (`from`, the account that published it), never the page's word.
// Built for a 360 px phone first: the channel list is a row of buttons above the messages.
import { useEffect, useRef, useState } from 'preact/hooks';
import { formatTime, useSite } from '../hooks.js';
import type { Site } from '../site.js';

const CHANNEL = /^[a-z0-9][a-z0-9-]{0,31}$/;

function readKey(site: Site): string {
  return `outpost.chatRead.${site.name}.${site.session.username}`;
}

/** When each channel was last read (the newest message's `at`); kept in localStorage (no secrets). */
function lastRead(site: Site): Record<string, number> {
  try {
    return JSON.parse(localStorage.getItem(readKey(site)) ?? '{}') as Record<string, number>;
  } catch {
    return {};
  }
}

function markRead(site: Site, channel: string): void {
  const read = lastRead(site);
  const newest = site.channel(channel).messages.at(-1)?.at ?? 0;
  if ((read[channel] ?? 0) >= newest) return;
  read[channel] = newest;
  localStorage.setItem(readKey(site), JSON.stringify(read));
}

function unread(site: Site, channel: string, read = lastRead(site)): number {
  const since = read[channel] ?? 0;
  return site
    .channel(channel)
    .messages.filter((message) => message.at > since && message.from !== site.session.username).length;
}

export function unreadTotal(site: Site): number {
  const read = lastRead(site);
  return [...site.channels.keys()].reduce((sum, channel) => sum + unread(site, channel, read), 0);
}

export function Chat({ site }: { site: Site }) {
  useSite(site);
  const [current, setCurrent] = useState('general');
  const [text, setText] = useState('');
  const [newChannel, setNewChannel] = useState('');
  const list = useRef<HTMLOListElement>(null);
  const channel = site.channel(current);
  useEffect(() => {
    markRead(site, current);
    list.current?.lastElementChild?.scrollIntoView({ block: 'end' });
  }, [current, channel.messages.length]);
  const read = lastRead(site);
  const send = (event: Event) => {
    event.preventDefault();
    const message = text.trim();
    if (!message) return;
    site.sendChat(current, message);
    setText('');
  };
  return (
    <section class="chat" aria-labelledby="chat-title">
      <h1 id="chat-title" class="visually-hidden">
        Chat
      </h1>
      <nav class="channels" aria-label="Channels">
        {[...site.channels.keys()].sort().map((name) => {
          const count = name === current ? 0 : unread(site, name, read);
          return (
            <button
              key={name}
              type="button"
              class={name === current ? 'current' : 'secondary'}
              aria-pressed={name === current}
              onClick={() => setCurrent(name)}
            >
              #{name}
              {count > 0 && (
                <span class="count" aria-label={`${count} unread`}>
                  {count}
                </span>
              )}
            </button>
          );
        })}
        <form
          class="new-channel"
          onSubmit={(event) => {
            event.preventDefault();
            const name = newChannel.trim().toLowerCase();
            if (!CHANNEL.test(name)) return;
            site.channel(name);
            setCurrent(name);
            setNewChannel('');
          }}
        >
          <label for="new-channel" class="visually-hidden">
            New channel
          </label>
          <input
            id="new-channel"
            placeholder="new channel"
            value={newChannel}
            pattern="[a-z0-9][a-z0-9-]{0,31}"
            onInput={(event) => setNewChannel(event.currentTarget.value)}
          />
        </form>
      </nav>
      <ol class="messages" ref={list} aria-live="polite" aria-label={`Messages in #${current}`}>
        {channel.messages.length === 0 && <li class="empty">No messages in #{current} yet.</li>}
        {channel.messages.map((message) => (
          <li key={message.id} class={message.from === site.session.username ? 'mine' : ''}>
            <span class="from">
              {message.from}
              <span class="role"> ({message.role})</span>
            </span>{' '}
            <time dateTime={new Date(message.at).toISOString()}>{formatTime(message.at)}</time>
            <p>{message.text}</p>
          </li>
        ))}
      </ol>
      <form class="send" onSubmit={send}>
        <label for="chat-text" class="visually-hidden">
          Message to #{current}
        </label>
        <input
          id="chat-text"
          value={text}
          maxLength={2000}
          placeholder={`Message #${current}`}
          autocomplete="off"
          onInput={(event) => setText(event.currentTarget.value)}
        />
        <button type="submit" disabled={site.connection !== 'online' || text.trim() === ''}>
          Send
        </button>
      </form>
    </section>
  );
}
