#!/bin/bash
# Cost of an RTSP camera: GStreamer's RTSP test server (H.264 1280x720 at 30 fps) → farmcam (one
# ffmpeg child decoding H.264 and encoding MJPEG) → N curl viewers. Prints the CPU share of one core
# of farmcam and of its ffmpeg child, their RSS, and the delivered frame rate. Run by hand:
#   cargo build --release && benches/measure_rtsp.sh 50 10
set -eu
cd "$(dirname "$0")/.."
. benches/lib.sh
VIEWERS=${1:-1}
SECONDS_=${2:-10}
BIN=target/release/farmcam
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DIR"' EXIT
/usr/bin/python3 tests/peers/rtsp_server.py --size 1280x720 --fps 30 > "$DIR/rtsp" &
wait_until 60 "the RTSP test server" grep -q ready "$DIR/rtsp"
PORT=$(awk '{print $2}' "$DIR/rtsp")
cat > "$DIR/farmcam.toml" <<TOML
[http]
listen = "127.0.0.1:8090"
# Every load-generator viewer comes from 127.0.0.1.
max_connections_per_client = 512
[[camera]]
id = "printer"
source = "rtsp://127.0.0.1:$PORT/cam"
TOML
$BIN run --config "$DIR/farmcam.toml" 2>/dev/null &
PID=$!
sleep 1
for _ in $(seq 1 "$VIEWERS"); do curl -s -N -o /dev/null http://127.0.0.1:8090/cameras/printer/stream & done
sleep 5
FF=$(cat /proc/$PID/task/*/children | tr ' ' '\n' | grep -v '^$' | head -1)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
c0=$(cpu $PID); f0=$(cpu "$FF"); t0=$(date +%s.%N)
sleep "$SECONDS_"
c1=$(cpu $PID); f1=$(cpu "$FF"); t1=$(date +%s.%N)
pct() { python3 -c "print(f'{($2-$1)/100/($t1-$t0)*100:.1f}')"; }
status=$(curl -s http://127.0.0.1:8090/api/cameras | python3 -c \
  "import json,sys; c=json.load(sys.stdin)[0]; print(f\"measured_fps={c['measured_fps']} delivered={c['frames_delivered']} skipped={c['frames_skipped']}\")")
echo "viewers=$VIEWERS farmcam_cpu=$(pct "$c0" "$c1")% ffmpeg_cpu=$(pct "$f0" "$f1")% farmcam_rss=$(rss $PID)kB ffmpeg_rss=$(rss "$FF")kB $status"
