// A network namespace for one box: a veth pair to the host's namespace, a /30 between them, IPv6 off
// inside (the box's own network setup decides that; here only the daemon's traffic is under test), and
// packet capture on the box's side with tcpdump. Needs root (CAP_NET_ADMIN); `netnsAvailable` says.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir, until } from './processes.js';

export interface Netns {
  name: string;
  /** The box's address inside the namespace, and the host side's (where the peers listen). */
  boxIp: string;
  hostIp: string;
  boxIface: string;
  /** The box interface's MAC address: a frame from it is a frame the box sent. */
  boxMac: string;
  /** `ip netns exec NAME`: prefix a command with this to run it inside. */
  exec: string[];
  remove(): void;
}

function ip(...args: string[]): void {
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr.trim()}`);
}

/** Whether this process may create network namespaces (root with CAP_NET_ADMIN), and if not, why. */
export function netnsAvailable(): { ok: boolean; why: string } {
  if (process.getuid?.() !== 0) return { ok: false, why: 'not root: network namespaces need CAP_NET_ADMIN' };
  const probe = `outpost-probe-${process.pid}`;
  const made = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (made.status !== 0) return { ok: false, why: `ip netns add failed: ${made.stderr.trim()}` };
  spawnSync('ip', ['netns', 'del', probe]);
  return { ok: true, why: '' };
}

export function createNetns(): Netns {
  const tag = `${process.pid % 10000}${Math.floor(Math.random() * 100)}`;
  const name = `outpost-egress-${tag}`;
  const hostIface = `oeh${tag}`;
  const boxIface = `oeb${tag}`;
  const octet = 1 + Math.floor(Math.random() * 250);
  const hostIp = `10.250.${octet}.1`;
  const boxIp = `10.250.${octet}.2`;
  ip('netns', 'add', name);
  const remove = () => {
    spawnSync('ip', ['link', 'del', hostIface]);
    spawnSync('ip', ['netns', 'del', name]);
  };
  try {
    ip('link', 'add', hostIface, 'type', 'veth', 'peer', 'name', boxIface);
    ip('link', 'set', boxIface, 'netns', name);
    ip('addr', 'add', `${hostIp}/30`, 'dev', hostIface);
    spawnSync('sysctl', ['-q', '-w', `net.ipv6.conf.${hostIface}.disable_ipv6=1`]);
    ip('link', 'set', hostIface, 'up');
    const inside = (...args: string[]) => ip('netns', 'exec', name, ...args);
    inside('sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1');
    inside('sysctl', '-q', '-w', 'net.ipv6.conf.default.disable_ipv6=1');
    inside('ip', 'link', 'set', 'lo', 'up');
    inside('ip', 'addr', 'add', `${boxIp}/30`, 'dev', boxIface);
    inside('ip', 'link', 'set', boxIface, 'up');
    inside('ip', 'route', 'add', 'default', 'via', hostIp);
  } catch (error) {
    remove();
    throw error;
  }
  const boxMac = spawnSync('ip', ['netns', 'exec', name, 'cat', `/sys/class/net/${boxIface}/address`], {
    encoding: 'utf8',
  }).stdout.trim();
  return { name, boxIp, hostIp, boxIface, boxMac, exec: ['ip', 'netns', 'exec', name], remove };
}

export interface Capture {
  file: string;
  /** Stop capturing (tcpdump flushes its file) and return the packets. */
  stop(): Promise<Packet[]>;
}

/** tcpdump on the box's interface, inside the namespace: every frame in and out, to a pcap file. */
export async function capture(ns: Netns): Promise<Capture> {
  const file = join(await tempDir('outpost-pcap-'), 'box.pcap');
  const child: ChildProcess = spawn(
    'ip',
    // --immediate-mode: each frame is handed to tcpdump at once. Without it libpcap delivers frames in
    // blocks, and the frames of the last block before SIGINT are counted as received but never written.
    [
      'netns',
      'exec',
      ns.name,
      'tcpdump',
      '-i',
      ns.boxIface,
      '-n',
      '--immediate-mode',
      '-U',
      '-s',
      '200',
      '-w',
      file,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let said = '';
  child.stderr?.on('data', (chunk: Buffer) => (said += chunk.toString()));
  await until(() => said.includes('listening on'), 10_000, 'tcpdump to listen').catch((error: Error) => {
    throw new Error(`${error.message}; tcpdump said: ${said}`);
  });
  return {
    file,
    async stop() {
      // tcpdump reads the kernel's capture buffer in batches: give the last frames time to reach it
      // (there is no event for "read"); -U then writes each to the file as it is read.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGINT');
      await exited;
      // Every frame the filter saw must be in the file, or the check could pass on missing frames.
      const captured = /(\d+) packets? captured/.exec(said)?.[1];
      const received = /(\d+) packets? received by filter/.exec(said)?.[1];
      if (captured === undefined || captured !== received)
        throw new Error(`tcpdump wrote ${captured ?? '?'} of the ${received ?? '?'} frames it saw: ${said}`);
      const packets = parsePcap(await readFile(file));
      if (packets.length !== Number(captured))
        throw new Error(`the capture file holds ${packets.length} frames, tcpdump says ${captured}`);
      return packets;
    },
  };
}

export interface Packet {
  /** Seconds since the epoch. */
  at: number;
  kind: 'arp' | 'ipv4' | 'ipv6' | 'other';
  /** Ethernet source address, lowercase with colons. */
  srcMac: string;
  /** ARP: who-has (1) or reply (2); sender and target IPs. */
  arp?: { op: number; sender: string; target: string };
  src?: string;
  dst?: string;
  proto?: 'tcp' | 'udp' | 'icmp' | number;
  sport?: number;
  dport?: number;
  /** TCP flags: SYN, ACK, FIN, RST. */
  syn?: boolean;
  ack?: boolean;
  /** Bytes of the frame as captured (header bytes only: snaplen 200). */
  length: number;
}

/** A classic pcap file (tcpdump -w) with Ethernet frames: just the headers the egress check needs. */
export function parsePcap(data: Buffer): Packet[] {
  if (data.length < 24) return [];
  const magic = data.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  const nano = magic === 0xa1b23c4d || magic === 0x4d3cb2a1;
  const u32 = (offset: number) => (le ? data.readUInt32LE(offset) : data.readUInt32BE(offset));
  const linkType = u32(20);
  if (linkType !== 1) throw new Error(`pcap link type ${linkType}: only Ethernet (1) is read`);
  const packets: Packet[] = [];
  for (let offset = 24; offset + 16 <= data.length;) {
    const seconds = u32(offset);
    const fraction = u32(offset + 4);
    const captured = u32(offset + 8);
    const original = u32(offset + 12);
    const frame = data.subarray(offset + 16, offset + 16 + captured);
    offset += 16 + captured;
    packets.push(parseFrame(frame, seconds + fraction / (nano ? 1e9 : 1e6), original));
  }
  return packets;
}

function ipv4(bytes: Buffer, at: number): string {
  return [...bytes.subarray(at, at + 4)].join('.');
}

function parseFrame(frame: Buffer, at: number, length: number): Packet {
  if (frame.length < 14) return { at, kind: 'other', srcMac: '', length };
  const srcMac = [...frame.subarray(6, 12)].map((byte) => byte.toString(16).padStart(2, '0')).join(':');
  const type = frame.readUInt16BE(12);
  const body = frame.subarray(14);
  if (type === 0x0806 && body.length >= 28) {
    const arp = { op: body.readUInt16BE(6), sender: ipv4(body, 14), target: ipv4(body, 24) };
    return { at, kind: 'arp', srcMac, arp, length };
  }
  if (type === 0x86dd) return { at, kind: 'ipv6', srcMac, length };
  if (type !== 0x0800 || body.length < 20) return { at, kind: 'other', srcMac, length };
  const headerLength = (body[0]! & 0x0f) * 4;
  const protocol = body[9]!;
  const packet: Packet = { at, kind: 'ipv4', srcMac, src: ipv4(body, 12), dst: ipv4(body, 16), length };
  const l4 = body.subarray(headerLength);
  if (protocol === 6 && l4.length >= 14) {
    const flags = l4[13]!;
    return {
      ...packet,
      proto: 'tcp',
      sport: l4.readUInt16BE(0),
      dport: l4.readUInt16BE(2),
      syn: (flags & 0x02) !== 0,
      ack: (flags & 0x10) !== 0,
    };
  }
  if (protocol === 17 && l4.length >= 4)
    return { ...packet, proto: 'udp', sport: l4.readUInt16BE(0), dport: l4.readUInt16BE(2) };
  if (protocol === 1) return { ...packet, proto: 'icmp' };
  return { ...packet, proto: protocol };
}

export interface Peer {
  what: string;
  host: string;
  proto: 'tcp' | 'udp';
  port: number;
}

/**
 * Every packet the box sent, judged: to a configured peer (the box opened the flow: a TCP SYN from it,
 * or UDP to the peer's port), a reply on a TCP connection the other side opened (its SYN came first),
 * or ARP for a peer's address. Anything else is a violation, described for a person.
 */
export function egressViolations(
  packets: readonly Packet[],
  box: { ip: string; mac: string },
  peers: readonly Peer[],
): string[] {
  const violations: string[] = [];
  const inbound = new Set<string>(); // TCP connections opened from outside: "remote:port>localPort"
  const peerHosts = new Set(peers.map((peer) => peer.host));
  const isPeer = (proto: 'tcp' | 'udp', host: string, port: number) =>
    peers.some((peer) => peer.proto === proto && peer.host === host && peer.port === port);
  for (const packet of packets) {
    if (packet.srcMac !== box.mac) {
      // Arriving: remember TCP connections opened from outside (a SYN without ACK).
      if (
        packet.kind === 'ipv4' &&
        packet.dst === box.ip &&
        packet.proto === 'tcp' &&
        packet.syn &&
        !packet.ack
      )
        inbound.add(`${packet.src}:${packet.sport}>${packet.dport}`);
      continue;
    }
    if (packet.kind === 'arp' && packet.arp) {
      if (!peerHosts.has(packet.arp.target))
        violations.push(`ARP ${packet.arp.op === 1 ? 'who-has' : 'reply'} ${packet.arp.target}`);
      continue;
    }
    if (packet.kind !== 'ipv4' || packet.src !== box.ip) {
      violations.push(`${packet.kind} frame from the box (${packet.length} bytes)`);
      continue;
    }
    const where = `${packet.dst}:${packet.dport ?? ''}`;
    if (packet.proto === 'tcp') {
      const reply = `${packet.dst}:${packet.dport}>${packet.sport}`;
      if (inbound.has(reply)) continue;
      // To a configured peer's port: a connection the box opened (perhaps before the capture began).
      if (isPeer('tcp', packet.dst!, packet.dport!)) continue;
      violations.push(`TCP to ${where}${packet.syn && !packet.ack ? ' (connection opened by the box)' : ''}`);
    } else if (packet.proto === 'udp') {
      if (!isPeer('udp', packet.dst!, packet.dport!))
        violations.push(
          `UDP to ${where}${packet.dport === 53 ? ' (DNS)' : packet.dport === 5353 ? ' (mDNS)' : packet.dport === 1900 ? ' (SSDP)' : ''}`,
        );
    } else {
      violations.push(`${String(packet.proto)} to ${packet.dst}`);
    }
  }
  return violations;
}
