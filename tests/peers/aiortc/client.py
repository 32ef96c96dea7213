#!/usr/bin/env python3
"""A WebRTC viewer that is not a browser: aiortc (Python's own WebRTC stack, its own ICE, DTLS,
SRTP and H.264 decoder) plays a farmcam camera over WHEP or camera-streamer's signalling.

  webrtc_client.py --whep URL             POST an SDP offer to URL (…/cameras/ID/whep)
  webrtc_client.py --camera-streamer URL  {"type":"request"} then the answer (…/cameras/ID/webrtc)

It prints one JSON object per line on stdout: {"session": …} once signalled,
{"first_frame_ms": T} (from the signalling POST to the first decoded frame), then
{"frames": N, "width": W, "height": H, "pts": P} after every decoded frame (at most 10 lines a
second; P is the frame's RTP timestamp, 90 kHz, as the sender stamped it), and {"error": …} if
signalling fails. It runs until killed (or --frames N decoded).
--no-decode receives (ICE, DTLS, SRTP, RTCP) without decoding: a cheap load generator for
benches/webrtc.sh; it prints nothing after the session line.
"""

import argparse
import asyncio
import json
import sys
import time
import urllib.request

from aiortc import RTCPeerConnection, RTCSessionDescription


def say(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def post(url, body, content_type):
    req = urllib.request.Request(url, data=body.encode(), method="POST",
                                 headers={"Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, dict(r.headers), r.read().decode()


async def main():
    p = argparse.ArgumentParser()
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--whep")
    g.add_argument("--camera-streamer")
    p.add_argument("--frames", type=int, default=0)
    p.add_argument("--no-decode", action="store_true")
    a = p.parse_args()
    if a.no_decode:
        import aiortc.rtcrtpreceiver as receiver

        class Skip:
            def decode(self, encoded_frame):
                return []

        receiver.get_decoder = lambda codec: Skip()
    posted = [0.0]

    pc = RTCPeerConnection()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    @pc.on("track")
    def on_track(track):
        async def frames():
            n, said = 0, 0.0
            while True:
                try:
                    frame = await track.recv()
                except Exception:
                    done.set()
                    return
                n += 1
                now = time.monotonic()
                if n == 1:
                    say(first_frame_ms=round((now - posted[0]) * 1000))
                last = a.frames and n >= a.frames
                if last or now - said >= 0.1:
                    said = now
                    say(frames=n, width=frame.width, height=frame.height, pts=frame.pts)
                if last:
                    done.set()
                    return
        asyncio.ensure_future(frames())

    try:
        if a.whep:
            pc.addTransceiver("video", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            posted[0] = time.monotonic()
            status, headers, answer = await loop.run_in_executor(
                None, post, a.whep, pc.localDescription.sdp, "application/sdp")
            if status != 201:
                say(error=f"WHEP answered {status}")
                return 1
            say(session=headers.get("Location") or headers.get("location"))
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        else:
            url = a.camera_streamer
            posted[0] = time.monotonic()
            _, _, body = await loop.run_in_executor(
                None, post, url, json.dumps({"type": "request"}), "application/json")
            offer = json.loads(body)
            await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            await loop.run_in_executor(None, post, url, json.dumps(
                {"type": "answer", "id": offer["id"], "sdp": pc.localDescription.sdp}),
                "application/json")
            say(session=offer["id"])
    except Exception as e:  # signalling refused: said, and the exit code tells
        say(error=str(e))
        return 1
    await done.wait()
    await pc.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
