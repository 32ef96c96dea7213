#!/usr/bin/python3
"""An RTSP or RTSPS H.264 (or H.265) test camera for farmcam's tests, served by GStreamer's RTSP server.

Run with Debian's /usr/bin/python3 (it sees Debian's gi bindings). Prints "ready PORT" on stdout once
it serves rtsp[s]://127.0.0.1:PORT/cam (or --path). Options:
  --port N            port to bind (0: any free port)
  --cert F --key F    serve RTSPS with this certificate (PEM)
  --user U --password P   require basic authentication
  --size WxH --fps N  the H.264 stream (default 320x240 at 15 fps)
  --keyint N          frames from one keyframe to the next (default: fps, one a second)
  --profile P         the H.264 profile (e.g. high; default: what x264's ultrafast preset makes)
  --h265              H.265 instead (x265), for cameras that send it
  --clip F            serve this H.264 byte stream (Annex B) in a loop at --fps, encoding nothing
                      (many cameras on one machine: benches/farm.sh)
  --cameras N         serve N cameras, at PATH1 .. PATHN (with --clip)
Prints "client" on stdout for every client connection.
"""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gio, GLib, Gst, GstRtspServer  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, default=0)
p.add_argument("--cert")
p.add_argument("--key")
p.add_argument("--user")
p.add_argument("--password")
p.add_argument("--size", default="320x240")
p.add_argument("--fps", type=int, default=15)
p.add_argument("--h265", action="store_true")
p.add_argument("--path", default="/cam")
p.add_argument("--keyint", type=int, default=0)
p.add_argument("--profile")
p.add_argument("--clip")
p.add_argument("--cameras", type=int, default=0)
a = p.parse_args()
w, h = a.size.split("x")

Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(str(a.port))

factory = GstRtspServer.RTSPMediaFactory()
if a.clip:
    # Paced by the sink's clock from the timestamps h264parse gives at the caps' rate; the file
    # is read again at its end, as one endless stream.
    factory.set_launch(
        f'( multifilesrc location="{a.clip}" loop=true '
        f'caps="video/x-h264,stream-format=byte-stream,framerate={a.fps}/1" '
        "! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
elif a.h265:
    factory.set_launch(
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={w},height={h},framerate={a.fps}/1 "
        # Closed groups of pictures (IDR keyframes, as cameras send), not x265's open-GOP CRAs.
        f"! x265enc tune=zerolatency speed-preset=ultrafast key-int-max={a.keyint or a.fps} "
        'option-string="open-gop=0" '
        "! video/x-h265,profile=main "
        "! rtph265pay name=pay0 pt=96 config-interval=1 )"
    )
else:
    factory.set_launch(
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={w},height={h},framerate={a.fps}/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={a.keyint or a.fps} "
        # High profile needs what the ultrafast preset turns off (8x8 transforms, CABAC).
        + ("dct8x8=true cabac=true " if a.profile == "high" else "")
        + (f"! video/x-h264,profile={a.profile} " if a.profile else "")
        + "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
factory.set_shared(True)

if a.cert or a.user:
    auth = GstRtspServer.RTSPAuth()
    if a.cert:
        auth.set_tls_certificate(Gio.TlsCertificate.new_from_files(a.cert, a.key))
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
    if a.user:
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(a.user, a.password), token)
    else:
        auth.set_default_token(token)
    server.set_auth(auth)
    factory.add_role_from_structure(
        Gst.Structure.new_from_string(
            "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
        )
    )

if a.cameras:
    for n in range(1, a.cameras + 1):
        f = GstRtspServer.RTSPMediaFactory()
        f.set_launch(factory.get_launch())
        f.set_shared(True)
        server.get_mount_points().add_factory(f"{a.path}{n}", f)
else:
    server.get_mount_points().add_factory(a.path, factory)
server.connect("client-connected", lambda *_: print("client", flush=True))
if server.attach(None) == 0:
    sys.exit(f"rtsp_server.py: cannot bind 127.0.0.1:{a.port}")
print("ready", server.get_bound_port(), flush=True)
GLib.MainLoop().run()
