// Receiving a bundle over the site LAN (`outpost update push`, push.ts): the console sends it as a
// series of commands through the site broker, so it travels over the TLS, authentication and ACL every
// console command already has (a console identity may send `cmd`; docs/topics.md). Chunks may arrive
// out of order (a broker resends QoS 1 messages past its in-flight limit later): each is written where
// it belongs and `have` counts the bytes from the start without a gap.
//   cmd/update-offer  {sha256, size, version, allowOlder?}  → {have, chunkBytes}: bytes already here
//   cmd/update-chunk  {sha256, offset, data (base64)}        → {have}
//   cmd/update-commit {sha256}                               → {queued}: sha256 checked, handed on
//   cmd/update-abort  {sha256}                               → {}
// A transfer is resumable: the part file is fsynced every SYNC_BYTES and its length recorded beside it,
// so after a cut (the tool stopped, the link dropped, the box lost power) an offer of the same bundle
// answers where to go on from. One transfer at a time; a new bundle replaces an unfinished one. The
// finished bundle goes to ready/, where outpost-update-install.path hands it to root's installer.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  statfs,
  truncate,
  type FileHandle,
} from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { argsOf } from '../commands/verbs.js';
import { CommandError } from '../errors.js';
import type { Verb } from '../mqtt/commands.js';
import { UPDATE_CHUNK_BYTES, updateVerbArgs } from '../mqtt/contract.js';
import { writeJsonAtomic } from './state.js';
import { z } from 'zod';

/** Largest chunk accepted, raw bytes (the contract's limit). */
export const CHUNK_BYTES = UPDATE_CHUNK_BYTES;
/** The part file is fsynced, and its length recorded, at least this often. */
export const SYNC_BYTES = 8 * 1024 * 1024;
/** How far past the gap a chunk may land (the sender keeps fewer than this in flight). */
export const AHEAD_BYTES = 64 * CHUNK_BYTES;

const offerArgs = updateVerbArgs['update-offer'];
const chunkArgs = updateVerbArgs['update-chunk'];
const shaArgs = updateVerbArgs['update-commit'];

interface Transfer {
  sha256: string;
  size: number;
  version: string;
  allowOlder: boolean;
  /** Bytes written from the start without a gap. */
  have: number;
  /** Chunks written past a gap (offset → length): a broker may deliver QoS 1 messages out of order. */
  ahead: Map<number, number>;
  /** Bytes known to be on disk (fsynced and recorded). */
  synced: number;
  handle: FileHandle;
}

export interface ReceiverDeps {
  /** The daemon's update folder (DATA/update): incoming/ and ready/. */
  dir: string;
  /** Free bytes to keep on the data partition beyond the bundle (clips.minFreeBytes). */
  reserveBytes: number;
  log: Logger;
  /** A transfer began, moved on, or ended (percent null). */
  progress: (version: string | null, percent: number | null) => void;
}

export class BundleReceiver {
  private transfer: Transfer | undefined;
  /** Chunks are written one after another, in the order they arrive. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: ReceiverDeps) {}

  private get incoming(): string {
    return join(this.deps.dir, 'incoming');
  }

  /** The verbs, for the daemon's command handler. */
  verbs(): Record<string, Verb> {
    return {
      'update-offer': (args) => this.serial(() => this.offer(argsOf(offerArgs, args))),
      'update-chunk': (args) => this.serial(() => this.chunk(argsOf(chunkArgs, args))),
      'update-commit': (args) => this.serial(() => this.commit(argsOf(shaArgs, args).sha256)),
      'update-abort': (args) => this.serial(() => this.abort(argsOf(shaArgs, args).sha256)),
    };
  }

  /** Close an open part file (its recorded length stays: the next offer resumes from it). */
  async close(): Promise<void> {
    await this.serial(async () => {
      const transfer = this.transfer;
      this.transfer = undefined;
      if (transfer) {
        await this.sync(transfer).catch(() => undefined);
        await transfer.handle.close();
        this.deps.progress(null, null);
      }
    });
  }

  private serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private paths(sha: string) {
    return { part: join(this.incoming, `${sha}.part`), meta: join(this.incoming, `${sha}.json`) };
  }

  private async offer(args: z.output<typeof offerArgs>): Promise<{ have: number; chunkBytes: number }> {
    if (this.transfer?.sha256 === args.sha256) {
      return { have: this.transfer.have, chunkBytes: CHUNK_BYTES };
    }
    await this.dropTransfer();
    await mkdir(this.incoming, { recursive: true, mode: 0o750 });
    const { part, meta } = this.paths(args.sha256);
    // Whatever else is in incoming/ is an older, unfinished bundle: one transfer at a time.
    for (const name of await readdir(this.incoming)) {
      if (!name.startsWith(args.sha256)) await rm(join(this.incoming, name), { force: true });
    }
    const recorded = await readFile(meta, 'utf8')
      .then((text) => z.object({ synced: z.int().nonnegative() }).parse(JSON.parse(text)).synced)
      .catch(() => 0);
    const have = Math.min(recorded, args.size);
    const free = await statfs(this.deps.dir).then((s) => s.bavail * s.bsize);
    if (args.size - have + this.deps.reserveBytes > free) {
      throw new CommandError(
        'FAILED',
        `not enough space for the bundle: ${args.size} bytes, ${free} free, ${this.deps.reserveBytes} kept for clips (UPDATE_TRANSFER_FAILED)`,
      );
    }
    // Anything past the last recorded sync may not have reached the card before a power cut.
    // r+ (created first), never a+: Linux ignores the position of a write to a file opened for append.
    await (await open(part, 'a', 0o640)).close();
    await truncate(part, have);
    const handle = await open(part, 'r+');
    this.transfer = { ...args, have, synced: have, handle, ahead: new Map() };
    await writeJsonAtomic(meta, { ...args, synced: have }, 0o640);
    this.deps.log.info(
      { event: 'update-receiving', version: args.version, size: args.size, have, sha256: args.sha256 },
      have > 0 ? `resuming a bundle at ${have} of ${args.size} bytes` : 'receiving a bundle',
    );
    this.deps.progress(args.version, percent(have, args.size));
    return { have, chunkBytes: CHUNK_BYTES };
  }

  private current(sha: string): Transfer {
    const transfer = this.transfer;
    if (transfer?.sha256 !== sha) {
      throw new CommandError(
        'BAD_ARGUMENTS',
        `no transfer of ${sha.slice(0, 12)}… is open: send update-offer first`,
      );
    }
    return transfer;
  }

  private async chunk(args: z.output<typeof chunkArgs>): Promise<{ have: number }> {
    const transfer = this.current(args.sha256);
    const data = Buffer.from(args.data, 'base64');
    if (args.offset > transfer.have + AHEAD_BYTES) {
      throw new CommandError(
        'BAD_ARGUMENTS',
        `chunk at ${args.offset} is too far ahead: the bundle is complete up to ${transfer.have}`,
      );
    }
    if (args.offset + data.length > transfer.size) {
      throw new CommandError(
        'BAD_ARGUMENTS',
        `chunk ends at ${args.offset + data.length}, past the size ${transfer.size}`,
      );
    }
    // A chunk sent again (its reply was lost) rewrites the same bytes.
    await transfer.handle.write(data, 0, data.length, args.offset);
    const before = transfer.have;
    if (args.offset > transfer.have) transfer.ahead.set(args.offset, data.length);
    else transfer.have = Math.max(transfer.have, args.offset + data.length);
    // Close gaps that chunks which arrived early were waiting on.
    for (let moved = true; moved;) {
      moved = false;
      for (const [offset, length] of transfer.ahead) {
        if (offset <= transfer.have) {
          transfer.have = Math.max(transfer.have, offset + length);
          transfer.ahead.delete(offset);
          moved = true;
        }
      }
    }
    if (transfer.have - transfer.synced >= SYNC_BYTES || transfer.have === transfer.size)
      await this.sync(transfer);
    if (Math.floor((before * 100) / transfer.size) !== Math.floor((transfer.have * 100) / transfer.size)) {
      this.deps.progress(transfer.version, percent(transfer.have, transfer.size));
    }
    return { have: transfer.have };
  }

  private async sync(transfer: Transfer): Promise<void> {
    await transfer.handle.sync();
    transfer.synced = transfer.have;
    const { meta } = this.paths(transfer.sha256);
    const { sha256, size, version, allowOlder, synced } = transfer;
    await writeJsonAtomic(meta, { sha256, size, version, allowOlder, synced }, 0o640);
  }

  private async commit(sha: string): Promise<{ queued: boolean }> {
    const transfer = this.current(sha);
    if (transfer.have !== transfer.size) {
      throw new CommandError(
        'BAD_ARGUMENTS',
        `only ${transfer.have} of ${transfer.size} bytes are here: send the rest`,
      );
    }
    await this.sync(transfer);
    await transfer.handle.close();
    this.transfer = undefined;
    const { part, meta } = this.paths(sha);
    const actual = await hashFile(part);
    if (actual !== sha) {
      await rm(part, { force: true });
      await rm(meta, { force: true });
      this.deps.progress(null, null);
      this.deps.log.error(
        { event: 'update-transfer-failed', expected: sha, actual },
        'the received bundle does not match its sha256: deleted',
      );
      throw new CommandError(
        'FAILED',
        `the bundle arrived damaged (sha256 ${actual}, expected ${sha}): deleted; push it again (UPDATE_TRANSFER_FAILED)`,
      );
    }
    const ready = join(this.deps.dir, 'ready');
    await mkdir(ready, { recursive: true, mode: 0o750 });
    // The options first: the path unit starts the installer as soon as the bundle appears.
    await writeJsonAtomic(
      join(ready, `${sha}.raucb.json`),
      { allowOlder: transfer.allowOlder, version: transfer.version },
      0o640,
    );
    await rename(part, join(ready, `${sha}.raucb`));
    await rm(meta, { force: true });
    this.deps.progress(null, null);
    this.deps.log.info(
      { event: 'update-received', version: transfer.version, size: transfer.size, sha256: sha },
      'bundle received and its sha256 checked: handed to the installer',
    );
    return { queued: true };
  }

  private async abort(sha: string): Promise<Record<string, never>> {
    if (this.transfer?.sha256 === sha) await this.dropTransfer();
    const { part, meta } = this.paths(sha);
    await rm(part, { force: true });
    await rm(meta, { force: true });
    this.deps.progress(null, null);
    return {};
  }

  private async dropTransfer(): Promise<void> {
    const transfer = this.transfer;
    this.transfer = undefined;
    if (transfer) {
      await this.sync(transfer).catch(() => undefined);
      await transfer.handle.close();
    }
  }
}

function percent(have: number, size: number): number {
  return Math.floor((have * 1000) / size) / 10;
}

export function hashFile(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(file)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}
