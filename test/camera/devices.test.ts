// `outpost cameras`: the device monitor's listing read into cameras with the config that uses each, and
// the command's output and exit status on this machine (no camera attached, no Pi camera stack).
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { formatCameraList, parseDeviceMonitor } from '../../daemon/src/camera/devices.js';
import { runCliToEnd } from '../support/processes.js';

// What gst-device-monitor-1.0 Video/Source prints for a UVC webcam and a Pi camera module (the layout
// of print_device() in gst-plugins-base's tools/gst-device-monitor.c; newer releases append value types).
const LISTING = `Probing devices...


Device found:

\tname  : HD Webcam C525
\tclass : Video/Source
\tcaps  : video/x-raw, format=YUY2, width=640, height=480, pixel-aspect-ratio=1/1, framerate={ (fraction)30/1, (fraction)15/1 }
\t        video/x-raw, format=YUY2, width=1280, height=720, pixel-aspect-ratio=1/1, framerate=10/1
\t        image/jpeg, width=1920, height=1080, pixel-aspect-ratio=1/1, framerate={ (fraction)30/1, (fraction)24/1 }
\tproperties:
\t\tudev-probed = true (gboolean)
\t\tdevice.bus_path = pci-0000:00:14.0-usb-0:1:1.0
\t\tdevice.product.name = "HD\\ Webcam\\ C525"
\t\tdevice.api = v4l2
\t\tdevice.path = /dev/video0
\t\tv4l2.device.driver = uvcvideo
\tgst-launch-1.0 v4l2src device=/dev/video0 ! ...


Device found:

\tname  : /base/soc/i2c0mux/i2c@1/imx708@1a
\tclass : Source/Video
\tcaps  : video/x-raw, format=NV12, width=[ 1, 4608 ], height=[ 1, 2592 ]
\t        video/x-raw, format=YUY2, width=[ 1, 4608 ], height=[ 1, 2592 ]
\tgst-launch-1.0 libcamerasrc camera-name=/base/soc/i2c0mux/i2c@1/imx708@1a ! ...

`;

describe('outpost cameras', () => {
  it('reads the device monitor listing into cameras, each with the source config that uses it', () => {
    const cameras = parseDeviceMonitor(LISTING);
    expect(cameras).toEqual([
      {
        name: 'HD Webcam C525',
        deviceClass: 'Video/Source',
        element: 'v4l2src',
        sourceType: 'v4l2',
        devicePath: '/dev/video0',
        stablePath: undefined,
        cameraName: undefined,
        caps: ['YUY2 up to 1280x720, 30 fps', 'MJPEG up to 1920x1080, 30 fps'],
      },
      {
        name: '/base/soc/i2c0mux/i2c@1/imx708@1a',
        deviceClass: 'Source/Video',
        element: 'libcamerasrc',
        sourceType: 'libcamera',
        devicePath: undefined,
        stablePath: undefined,
        cameraName: '/base/soc/i2c0mux/i2c@1/imx708@1a',
        caps: ['NV12 up to 4608x2592', 'YUY2 up to 4608x2592'],
      },
    ]);
    const text = formatCameraList(
      [{ ...cameras[0]!, stablePath: '/dev/v4l/by-id/usb-046d_HD_Webcam_C525-video-index0' }, cameras[1]!],
      [{ factory: 'x264enc', usable: true, reason: undefined }],
    );
    expect(text).toBe(
      [
        'Cameras (GStreamer device monitor, Video/Source):',
        '  HD Webcam C525 (Video/Source, v4l2src)',
        '    config:  source: { type: v4l2, device: /dev/v4l/by-id/usb-046d_HD_Webcam_C525-video-index0 }',
        '    node:    /dev/video0',
        '    caps:    YUY2 up to 1280x720, 30 fps; MJPEG up to 1920x1080, 30 fps',
        '  /base/soc/i2c0mux/i2c@1/imx708@1a (Source/Video, libcamerasrc)',
        '    config:  source: { type: libcamera, cameraName: "/base/soc/i2c0mux/i2c@1/imx708@1a" }',
        '    caps:    NV12 up to 4608x2592; YUY2 up to 4608x2592',
        '',
        'H.264 encoders (registry probe; `encoder: auto` takes the first usable):',
        '  x264enc  usable',
        '',
      ].join('\n'),
    );
    expect(parseDeviceMonitor('Probing devices...\n\n')).toEqual([]);
  });

  it('on this machine: says clearly that no camera is found, lists the encoders, exits 0', async () => {
    const videoNodes = readdirSync('/dev').filter((name) => name.startsWith('video'));
    expect(videoNodes, 'this test expects a machine without cameras').toEqual([]);
    const { code, stdout } = await runCliToEnd(['cameras']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Cameras \(GStreamer device monitor, Video\/Source\):\n {2}no cameras found: /);
    expect(stdout).toMatch(/^ {2}x264enc {6}usable$/m);
    expect(stdout).toMatch(/^ {2}v4l2h264enc {2}not usable: no hardware H\.264 encoder/m);
    const json = await runCliToEnd(['cameras', '--json']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      cameras: [],
      encoders: [
        { factory: 'v4l2h264enc', usable: false },
        { factory: 'x264enc', usable: true },
        { factory: 'openh264enc', usable: true },
      ],
    });
  });

  it('without gst-device-monitor-1.0: names the package to install and exits 3', async () => {
    // node itself is started by its absolute path; GStreamer's tools are not on this PATH.
    const { code, stdout, stderr } = await runCliToEnd(['cameras'], { PATH: '/nonexistent' });
    expect(code).toBe(3);
    expect(stdout).toBe('');
    expect(stderr).toMatch(
      /outpost: cannot list cameras: gst-device-monitor-1\.0 is not installed \(install gstreamer1\.0-plugins-base-apps/,
    );
  });
});
