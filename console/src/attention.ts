// Unacknowledged panic alerts keep drawing attention until someone acknowledges them, the way incident
// chat tools re-notify an urgent message (Mattermost's persistent notifications): a tone made in the
// page (Web Audio, no sound file), the tab title, a desktop notification where the operator allowed
// them (shown by the browser itself: no push server, it works offline), and the banner the page draws.
// Each alert notifies when it first appears and again every `renotifyMinutes` while unacknowledged.
import type { InboxEntryPayload } from './site.js';

const TITLE = document.title;

export class Attention {
  private readonly lastNotified = new Map<string, number>();
  private audio: AudioContext | undefined;
  private timer: number | undefined;
  private blink = false;
  /** Notifications made (tests read it through window.outpostConsole). */
  notifications = 0;

  constructor(private readonly renotifyMs: number) {}

  /** Call with the open (unacknowledged, raised) panic alerts whenever the inbox changes. */
  update(open: InboxEntryPayload[]): void {
    const now = Date.now();
    const ids = new Set(open.map((entry) => `${entry.device}/${entry.key}`));
    for (const id of [...this.lastNotified.keys()]) if (!ids.has(id)) this.lastNotified.delete(id);
    for (const entry of open) {
      const id = `${entry.device}/${entry.key}`;
      const last = this.lastNotified.get(id);
      if (last === undefined || now - last >= this.renotifyMs) {
        this.lastNotified.set(id, now);
        this.notify(entry);
      }
    }
    if (open.length > 0 && this.timer === undefined) {
      this.timer = window.setInterval(() => {
        this.blink = !this.blink;
        document.title = this.blink ? `(${this.lastNotified.size}) PANIC — ${TITLE}` : TITLE;
      }, 1000);
    } else if (open.length === 0 && this.timer !== undefined) {
      window.clearInterval(this.timer);
      this.timer = undefined;
      document.title = TITLE;
    }
  }

  /** Ask for desktop notifications (a user gesture is needed: the banner's button). */
  async enableNotifications(): Promise<void> {
    if ('Notification' in window && Notification.permission === 'default')
      await Notification.requestPermission();
    this.audio ??= new AudioContext();
    await this.audio.resume();
  }

  get notificationsAllowed(): boolean {
    return 'Notification' in window && Notification.permission === 'granted';
  }

  stop(): void {
    if (this.timer !== undefined) window.clearInterval(this.timer);
    this.timer = undefined;
    document.title = TITLE;
  }

  private notify(entry: InboxEntryPayload): void {
    this.notifications += 1;
    this.tone();
    if (this.notificationsAllowed) {
      const cameras = entry.alert.cameras?.join(', ');
      new Notification(`PANIC at ${entry.device}`, {
        body: `${entry.alert.message}${cameras ? ` (${cameras})` : ''} — not acknowledged`,
        tag: `${entry.device}/${entry.key}`,
        requireInteraction: true,
      });
    }
  }

  /** Three short beeps, made in the page. */
  private tone(): void {
    try {
      this.audio ??= new AudioContext();
      const context = this.audio;
      if (context.state !== 'running') return; // browsers allow sound only after a click in the page
      for (let i = 0; i < 3; i++) {
        const start = context.currentTime + i * 0.25;
        const oscillator = context.createOscillator();
        const gain = context.createGain();
        oscillator.frequency.value = 880;
        gain.gain.setValueAtTime(0.25, start);
        gain.gain.exponentialRampToValueAtTime(0.001, start + 0.18);
        oscillator.connect(gain).connect(context.destination);
        oscillator.start(start);
        oscillator.stop(start + 0.2);
      }
    } catch {
      // no audio device: the banner and the title still show it
    }
  }
}
