// A Pin for tests and benchmarks: `set(level)` changes the line as a finger or a bouncing contact
// would, and watchers see the edges the pin was opened for; `written` records what was driven.
import type { Edge, Pin, PinValue, WatchCallback } from './pin.js';

export class FakePin implements Pin {
  readonly description: string;
  readonly written: PinValue[] = [];
  closed = 0;
  private level: PinValue;
  private readonly watchers = new Set<WatchCallback>();

  constructor(
    options: { level?: PinValue; edge?: Edge; description?: string } = {},
    private readonly edge: Edge = options.edge ?? 'both',
  ) {
    this.level = options.level ?? 0;
    this.description = options.description ?? 'fake pin';
  }

  /** Drive the line from outside (a press, a bounce); watchers see the edge at once. */
  set(level: PinValue): void {
    if (level === this.level) return;
    this.level = level;
    const reported =
      this.edge === 'both' ||
      (this.edge === 'rising' && level === 1) ||
      (this.edge === 'falling' && level === 0);
    if (!reported) return;
    for (const watcher of [...this.watchers]) watcher(null, level);
  }

  read(): Promise<PinValue> {
    return Promise.resolve(this.level);
  }

  write(value: PinValue): Promise<void> {
    this.level = value;
    this.written.push(value);
    return Promise.resolve();
  }

  watch(callback: WatchCallback): void {
    this.watchers.add(callback);
  }

  unwatchAll(): void {
    this.watchers.clear();
  }

  close(): Promise<void> {
    this.closed += 1;
    this.watchers.clear();
    return Promise.resolve();
  }
}
