// Re-render a component when the site changes (the Site batches its changes to one per microtask).
import { useEffect, useState } from 'preact/hooks';
/** Re-render a component when a site (or the page's whole connection, at the centre) changes. */
export function useSite(site: { subscribe(listener: () => void): () => void }): number {
  const [version, setVersion] = useState(0);
  useEffect(() => site.subscribe(() => setVersion((v) => v + 1)), [site]);
  return version;
}

/** Re-render every `ms` (relative times, "online for…"). */
export function useTick(ms: number): void {
  const [, setTick] = useState(0);
  useEffect(() => {
    const timer = window.setInterval(() => setTick((t) => t + 1), ms);
    return () => window.clearInterval(timer);
  }, [ms]);
}

export function formatTime(at: number): string {
  const date = new Date(at);
  const today = new Date();
  const time = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return date.toDateString() === today.toDateString() ? time : `${date.toLocaleDateString()} ${time}`;
}
