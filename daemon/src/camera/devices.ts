// `outpost cameras`: what GStreamer's device monitor finds on this box (USB cameras through V4L2, Pi
// camera modules through libcamera), each with the `source` config that would use it and a short
// summary of its caps, beside which H.264 encoders are usable. gstreamer-superficial exposes no
// GstDeviceMonitor, so this runs `gst-device-monitor-1.0 Video/Source` and reads its text.
import { readdirSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { OutpostError } from '../errors.js';
import type { EncoderStatus } from './encoders.js';
import { runDeviceMonitor } from '../gst/fork.js';

const MONITOR_TIMEOUT_MS = 10_000;
const BY_ID = '/dev/v4l/by-id';

export interface FoundCamera {
  name: string;
  deviceClass: string;
  /** The element GStreamer would use (v4l2src, libcamerasrc, pipewiresrc…). */
  element: string | undefined;
  /** The `source.type` that uses this camera, when Outpost has one for its element. */
  sourceType: 'v4l2' | 'libcamera' | undefined;
  /** V4L2 device node, e.g. /dev/video0. */
  devicePath: string | undefined;
  /** A /dev/v4l/by-id/… link to the same node: survives replugging, so prefer it in config. */
  stablePath: string | undefined;
  /** libcamera's camera id (`source.cameraName`). */
  cameraName: string | undefined;
  /** One entry per media type and format: largest size and highest frame rate offered. */
  caps: string[];
}

/** Cameras the device monitor finds now. Throws DEVICE_MONITOR_FAILED when it cannot run. */
export async function findCameras(): Promise<FoundCamera[]> {
  const { stdout, failure } = await runDeviceMonitor(MONITOR_TIMEOUT_MS);
  if (failure !== undefined) {
    throw new OutpostError('DEVICE_MONITOR_FAILED', `cannot list cameras: ${failure}`, {
      hint: 'install gstreamer1.0-plugins-base-apps (gst-device-monitor-1.0)',
    });
  }
  return parseDeviceMonitor(stdout).map((camera) => ({
    ...camera,
    stablePath: camera.devicePath === undefined ? undefined : stablePathFor(camera.devicePath),
  }));
}

/**
 * Parse gst-device-monitor-1.0's listing (gst-plugins-base tools/gst-device-monitor.c, print_device):
 * a `Device found:` block per device with `name  :`, `class :`, `caps  :` and its continuation lines,
 * `properties:` with `key = value` lines, and a suggested `gst-launch-1.0 ELEMENT PROPS ! ...` line.
 */
export function parseDeviceMonitor(text: string): FoundCamera[] {
  const blocks = text.split(/^Device found:\s*$/m).slice(1);
  return blocks.map((block) => {
    const lines = block.split('\n');
    const field = (label: string): string | undefined =>
      lines
        .find((line) => new RegExp(`^\\t${label}\\s*: `).test(line))
        ?.replace(/^\t\w+\s*: /, '')
        .trim();
    const capsLines: string[] = [];
    let inCaps = false;
    const properties = new Map<string, string>();
    let launch: string | undefined;
    for (const line of lines) {
      if (/^\tcaps\s*: /.test(line)) {
        inCaps = true;
        capsLines.push(line.replace(/^\tcaps\s*: /, '').trim());
        continue;
      }
      // Continuation lines line up under the first: a tab and eight spaces.
      if (inCaps && /^\t {2,}\S/.test(line)) {
        capsLines.push(line.trim());
        continue;
      }
      inCaps = false;
      const property = /^\t\t([\w.-]+) = (.*)$/.exec(line);
      // Newer GStreamer appends the type of non-string values: `udev-probed = true (gboolean)`.
      if (property) properties.set(property[1]!, unquote(property[2]!.replace(/ \([A-Za-z]+\)$/, ''))!);
      const launchLine = /^\tgst-launch-1\.0 (.*) ! \.\.\.\s*$/.exec(line);
      if (launchLine) launch = launchLine[1];
    }
    const element = launch?.split(' ')[0];
    const launchProperty = (name: string) =>
      launch === undefined
        ? undefined
        : unquote(new RegExp(`\\b${name}=('[^']*'|"[^"]*"|\\S+)`).exec(launch)?.[1]);
    const devicePath =
      properties.get('device.path') ?? properties.get('api.v4l2.path') ?? launchProperty('device');
    const sourceType = element === 'v4l2src' ? 'v4l2' : element === 'libcamerasrc' ? 'libcamera' : undefined;
    return {
      name: field('name') ?? '(unnamed)',
      deviceClass: field('class') ?? '',
      element,
      sourceType,
      devicePath,
      stablePath: undefined,
      cameraName: element === 'libcamerasrc' ? launchProperty('camera-name') : undefined,
      caps: summariseCaps(capsLines),
    };
  });
}

/** `'a b'` or `"a\ b"` (shell or GStreamer quoting) → `a b`. */
function unquote(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (value.startsWith("'") && value.endsWith("'")) return value.slice(1, -1);
  if (value.startsWith('"') && value.endsWith('"')) return value.slice(1, -1).replace(/\\(.)/g, '$1');
  return value.replace(/\\(.)/g, '$1');
}

/** `video/x-raw, format=YUY2, width=640, height=480, framerate={ (fraction)30/1, … }` lines → `YUY2 up to 640x480, 30 fps`. */
function summariseCaps(lines: readonly string[]): string[] {
  const best = new Map<string, { pixels: number; size: string; fps: number }>();
  for (const line of lines) {
    const media = line
      .split(',')[0]!
      .replace(/\(.*\)$/, '')
      .trim();
    const format = /\bformat=(?:\(string\))?([\w-]+)/.exec(line)?.[1];
    const key = media === 'video/x-raw' && format ? format : media === 'image/jpeg' ? 'MJPEG' : media;
    const width = largest(/\bwidth=(\[[^\]]*\]|\{[^}]*\}|[^,]*)/.exec(line)?.[1]);
    const height = largest(/\bheight=(\[[^\]]*\]|\{[^}]*\}|[^,]*)/.exec(line)?.[1]);
    const framerate = /\bframerate=(\{[^}]*\}|\[[^\]]*\]|[^,]*)/.exec(line)?.[1] ?? '';
    const fps = Math.max(
      0,
      ...[...framerate.matchAll(/(\d+)\/(\d+)/g)].map(([, n, d]) =>
        Number(d) > 0 ? Number(n) / Number(d) : 0,
      ),
    );
    const entry = best.get(key) ?? { pixels: 0, size: '', fps: 0 };
    if (width !== undefined && height !== undefined && width * height > entry.pixels) {
      entry.pixels = width * height;
      entry.size = `${width}x${height}`;
    }
    entry.fps = Math.max(entry.fps, fps);
    best.set(key, entry);
  }
  return [...best].map(
    ([key, { size, fps }]) =>
      `${key}${size ? ` up to ${size}` : ''}${fps > 0 ? `, ${Math.round(fps * 100) / 100} fps` : ''}`,
  );
}

/** The largest integer in a caps value: `640`, `(int)640`, `[ 1, 32768 ]`, `{ (int)640, (int)1280 }`. */
function largest(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const numbers = [...value.matchAll(/\d+/g)].map(([n]) => Number(n));
  return numbers.length === 0 ? undefined : Math.max(...numbers);
}

/** A /dev/v4l/by-id link that resolves to `devicePath`, if udev made one. */
function stablePathFor(devicePath: string): string | undefined {
  let links: string[];
  try {
    links = readdirSync(BY_ID);
  } catch {
    return undefined;
  }
  const target = safeRealpath(devicePath);
  return links.map((link) => join(BY_ID, link)).find((link) => safeRealpath(link) === target);
}

function safeRealpath(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

/** The text `outpost cameras` prints. */
export function formatCameraList(
  cameras: readonly FoundCamera[],
  encoders: readonly EncoderStatus[],
): string {
  const out: string[] = ['Cameras (GStreamer device monitor, Video/Source):'];
  if (cameras.length === 0) {
    out.push(
      '  no cameras found: GStreamer sees no USB camera (check `ls /dev/video*` and the cable) and no Pi',
      '  camera module (on a Pi, install gstreamer1.0-libcamera). A test camera (source.type: test) or an',
      '  IP camera (source.type: rtsp) needs no device here.',
    );
  }
  for (const camera of cameras) {
    out.push(`  ${camera.name} (${camera.deviceClass}${camera.element ? `, ${camera.element}` : ''})`);
    if (camera.sourceType === 'v4l2') {
      out.push(
        `    config:  source: { type: v4l2, device: ${camera.stablePath ?? camera.devicePath ?? '?'} }`,
      );
      if (camera.stablePath && camera.devicePath) out.push(`    node:    ${camera.devicePath}`);
    } else if (camera.sourceType === 'libcamera') {
      out.push(
        `    config:  source: { type: libcamera${camera.cameraName ? `, cameraName: ${JSON.stringify(camera.cameraName)}` : ''} }`,
      );
    } else {
      out.push(`    config:  no source.type for ${camera.element ?? 'this device'} yet`);
    }
    out.push(`    caps:    ${camera.caps.length > 0 ? camera.caps.join('; ') : 'none reported'}`);
  }
  out.push('', 'H.264 encoders (registry probe; `encoder: auto` takes the first usable):');
  const width = Math.max(...encoders.map((e) => e.factory.length));
  for (const encoder of encoders) {
    out.push(
      `  ${encoder.factory.padEnd(width)}  ${encoder.usable ? 'usable' : `not usable: ${encoder.reason ?? 'unknown'}`}`,
    );
  }
  return `${out.join('\n')}\n`;
}
