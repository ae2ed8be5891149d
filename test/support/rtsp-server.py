#!/usr/bin/python3
# A stand-in IP camera for tests: GStreamer's RTSP server (gir1.2-gst-rtsp-server-1.0) on 127.0.0.1,
# serving a live H.264 test pattern (constrained baseline, like a camera set up for browsers) at
# rtsp://127.0.0.1:PORT/cam. Prints the bound port on stdout once it listens; runs until killed.
# Usage: rtsp-server.py [USER PASSWORD]  (with them, the stream needs basic authentication)
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service("0")
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1"
    " ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 bitrate=300"
    " ! video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)
factory.set_shared(True)
if len(sys.argv) == 3:
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(sys.argv[1], sys.argv[2]), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_role_from_structure(
        Gst.Structure.from_string("viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")[0]
    )
    factory.set_permissions(permissions)
server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    sys.exit("rtsp-server: could not listen on 127.0.0.1")
print(server.get_bound_port(), flush=True)
GLib.MainLoop().run()
