// The camera's RTCP, both ways, through one socket of the worker's (see pipeline.ts, cameraChain).
// Janus latches onto the address its RTCP port hears from and sends keyframe requests there, so the
// socket that sends our reports must also be the one that listens, and a launch description cannot
// give a udpsink and a udpsrc one socket (gstreamer-superficial cannot hand a GSocket over either).
// The pipeline's RTCP (SRTCP with SRTP) comes out of a loopback udpsink; this relay sends it on to
// the SFU from its socket and hands back what the SFU sends to that socket (only from the SFU's RTCP
// address, and only RTCP) to the session's loopback udpsrc. A few packets a second, never per frame.
import { createSocket, type Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';

/** Names of the two loopback ends of the camera's RTCP in its pipeline (pipeline.ts renders them). */
export const RTCP_RELAY = { out: 'rtcpout', in: 'rtcpin' } as const;

/** The SFU's RTCP address for one camera (rtp.port + 1 at sfu.host). */
export interface RtcpRelayPlan {
  sfuHost: string;
  sfuPort: number;
}

export interface RtcpRelay {
  /** The loopback port the pipeline's RTCP udpsink must send to. */
  readonly localPort: number;
  /** Where to hand the SFU's RTCP: the session's udpsrc port, read once the pipeline plays. */
  deliverTo(port: () => number): void;
  stop(): void;
}

/** RTP/RTCP demultiplexing (RFC 5761 §4): RTCP packet types 192–223, version 2. */
function isRtcp(packet: Buffer): boolean {
  return packet.length >= 8 && packet[0]! >> 6 === 2 && packet[1]! >= 192 && packet[1]! <= 223;
}

function bind(socket: Socket, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, address, () => {
      socket.off('error', reject);
      resolve();
    });
  });
}

export async function startRtcpRelay(
  plan: RtcpRelayPlan,
  onError: (error: Error) => void,
): Promise<RtcpRelay> {
  const sfu = await lookup(plan.sfuHost);
  const local = createSocket('udp4');
  const remote = createSocket(sfu.family === 6 ? 'udp6' : 'udp4');
  await bind(local, '127.0.0.1');
  await bind(remote, sfu.family === 6 ? '::' : '0.0.0.0');
  local.on('error', onError);
  remote.on('error', onError);
  let sessionPort: () => number = () => 0;

  // The pipeline's SRTCP → the SFU's RTCP port, from the socket the SFU will answer.
  local.on('message', (packet) => remote.send(packet, plan.sfuPort, sfu.address));
  // The SFU's answers → the session. Anything else reaching this LAN-facing socket is dropped.
  remote.on('message', (packet, from) => {
    if (from.port !== plan.sfuPort || from.address !== sfu.address || !isRtcp(packet)) return;
    const port = sessionPort();
    if (port > 0) local.send(packet, port, '127.0.0.1');
  });

  return {
    localPort: local.address().port,
    deliverTo(port) {
      sessionPort = port;
    },
    stop() {
      local.close();
      remote.close();
    },
  };
}
