// What the camera tests read in RTP packets.

/** True when an RTP packet starts an IDR slice (NAL 5 whole, in a STAP-A, or an FU-A start; RFC 6184). */
export function startsIdr(packet: Buffer): boolean {
  let offset = 12 + (packet[0]! & 0x0f) * 4;
  if (packet[0]! & 0x10) offset += 4 + packet.readUInt16BE(offset + 2) * 4;
  const type = packet[offset]! & 0x1f;
  if (type === 5) return true;
  if (type === 28) return (packet[offset + 1]! & 0x80) !== 0 && (packet[offset + 1]! & 0x1f) === 5;
  if (type === 24) {
    for (let at = offset + 1; at + 2 < packet.length; at += 2 + packet.readUInt16BE(at)) {
      if ((packet[at + 2]! & 0x1f) === 5) return true;
    }
  }
  return false;
}
