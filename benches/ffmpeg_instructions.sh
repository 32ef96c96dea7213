#!/bin/bash
# Instructions ffmpeg executes per 720p frame for farmcam's H.264 → MJPEG transcode, counted with
# valgrind's callgrind (repeatable, unlike CPU time on a noisy machine). Compares the range
# conversion farmcam used before (`-pix_fmt yuvj420p` alone: swscale's generic path) with the
# one it uses now (`zscale=r=full`), against decoding alone and encoding without any conversion.
# Run by hand:  benches/ffmpeg_instructions.sh [FRAMES]      (default 90; ~2 minutes)
set -eu
FRAMES=${1:-90}
command -v valgrind >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends valgrind
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
# A camera-like source: H.264 1280x720, video range (what RTSP cameras mostly send).
ffmpeg -v error -f lavfi -i testsrc2=size=1280x720:rate=30 -t 10 -pix_fmt yuv420p \
    -c:v libx264 -preset ultrafast -tune zerolatency "$DIR/src.mp4"
count() {
    valgrind --tool=callgrind --callgrind-out-file="$DIR/cg" \
        ffmpeg -v error -threads 1 -i "$DIR/src.mp4" -frames:v "$FRAMES" "$@" 2>&1 |
        awk '/Collected/ {print $4}'
}
decode=$(count -f null -)
before=$(count -c:v mjpeg -q:v 5 -pix_fmt yuvj420p -f mjpeg -y "$DIR/a.mjpeg")
after=$(count -vf zscale=r=full -c:v mjpeg -q:v 5 -pix_fmt yuvj420p -f mjpeg -y "$DIR/b.mjpeg")
floor=$(count -c:v mjpeg -q:v 5 -strict -1 -pix_fmt yuv420p -f mjpeg -y "$DIR/c.mjpeg")
python3 - "$FRAMES" "$decode" "$before" "$after" "$floor" <<'EOF'
import sys
n, decode, before, after, floor = int(sys.argv[1]), *map(int, sys.argv[2:])
m = lambda x: f"{x / n / 1e6:.1f} M"
print("| ffmpeg arguments (H.264 720p → MJPEG) | instructions per frame | vs before |")
print("| --- | --- | --- |")
print(f"| decode only (`-f null`) | {m(decode)} | |")
print(f"| before: `-c:v mjpeg -pix_fmt yuvj420p` | {m(before)} | 1.00 |")
print(f"| now: `-vf zscale=r=full -c:v mjpeg -pix_fmt yuvj420p` | {m(after)} | {after / before:.2f} |")
print(f"| no range conversion at all (wrong colours; the floor) | {m(floor)} | {floor / before:.2f} |")
EOF
