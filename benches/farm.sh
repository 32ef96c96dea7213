#!/bin/bash
# The farm: N H.264 720p30 cameras (default 20; a keyframe a second) with a farm's consumers at
# once: the wall open in Chromium (sized tiles, a snapshot of each camera a second), MQTT
# snapshots of every camera every 10 s, and two full-rate live viewers of cameras 1 and 2 (WebRTC,
# aiortc receiving without decoding, as a browser would take the camera's H.264; or MJPEG). The
# cameras are one GStreamer RTSP server looping a clip encoded once (it encodes nothing, so this
# machine can hold twenty). Reported: farmcam's CPU, RSS and PSS (with its ffmpeg children; total
# and per camera), its processes, the cameras' connections, the wall's bytes per second; and in
# the same run ffmpeg's floor for the same work: a stream copy of each camera (what WebRTC viewers
# take), a keyframe decode + JPEG encode of each (what 1 Hz snapshots need), and for MJPEG viewers
# two full transcodes. `--walls N` opens the wall N times (N Chromium browsers from the same
# address, as two people behind one proxy or two tabs). `--timelapse` records a timelapse of
# every camera (one picture every 5 s) during the measurement, then stops them all and measures
# the renders' CPU time per minute of print. Run by hand, not in CI (WebRTC viewers need
# `packaging/dev.sh deps`):
#   benches/farm.sh [--walls N] [--timelapse] [CAMERAS] [SECONDS] [webrtc|mjpeg]
#                                                                   (defaults 1, off, 20, 60, webrtc)
set -eu
cd "$(dirname "$0")/.."
. benches/lib.sh
WALLS=1
TIMELAPSE=""
while [ "${1:-}" = --walls ] || [ "${1:-}" = --timelapse ]; do
    if [ "$1" = --walls ]; then
        WALLS=$2
        shift 2
    else
        TIMELAPSE=1
        shift
    fi
done
N=${1:-20}
SECS=${2:-60}
VIEWERS=${3:-webrtc}
AIORTC="bash tests/peers/aiortc/run.sh"
BIN=target/release/farmcam
cargo build --release --bin farmcam
DIR=$(mktemp -d)
cleanup() {
    kill $(jobs -p) 2>/dev/null || true
    sleep 0.5
    rm -rf "$DIR"
}
trap cleanup EXIT

# The clip: 10 s of 720p30 H.264, a keyframe a second, no B-frames (as cameras send).
ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=1280x720:rate=30 -t 10 \
    -c:v libx264 -preset veryfast -g 30 -bf 0 -pix_fmt yuv420p -b:v 2M -f h264 -y "$DIR/clip.h264"
/usr/bin/python3 tests/peers/rtsp_server.py --clip "$DIR/clip.h264" --fps 30 --cameras "$N" > "$DIR/rtsp" &
wait_until 60 "the RTSP test server" grep -q ready "$DIR/rtsp"
RTSP_PORT=$(awk '/ready/{print $2}' "$DIR/rtsp")
src() { echo "rtsp://127.0.0.1:$RTSP_PORT/cam$1"; }

MQTT_PORT=18831
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' $MQTT_PORT > "$DIR/mosquitto.conf"
mosquitto -c "$DIR/mosquitto.conf" > "$DIR/mosquitto.log" 2>&1 &

# farmcam
{
    printf '[http]\nlisten = "127.0.0.1:8096"\n[mqtt]\nurl = "mqtt://127.0.0.1:%s"\nsnapshot_interval = "10s"\n[webrtc]\nlisten = "127.0.0.1:8557"\n' $MQTT_PORT
    [ -n "$TIMELAPSE" ] && printf '[timelapse]\ndir = "%s/timelapses"\ninterval = "5s"\n' "$DIR"
    for i in $(seq 1 "$N"); do
        printf '[[camera]]\nid = "cam%s"\nsource = "%s"\n' "$i" "$(src "$i")"
    done
} > "$DIR/farmcam.toml"
$BIN run --config "$DIR/farmcam.toml" 2>"$DIR/farmcam.log" &
FC=$!
wait_until 60 "farmcam at http://127.0.0.1:8096/api/cameras" curl -sf -o /dev/null http://127.0.0.1:8096/api/cameras
CHROMIUM=$(command -v chromium || command -v chromium-browser)
for w in $(seq 1 "$WALLS"); do
    "$CHROMIUM" --headless=new --no-sandbox --disable-gpu --window-size=1920,1080 \
        --user-data-dir="$DIR/chrome$w" http://127.0.0.1:8096/ > "$DIR/chrome$w.log" 2>&1 &
done
for i in 1 2; do
    if [ "$VIEWERS" = webrtc ]; then
        $AIORTC --no-decode --whep "http://127.0.0.1:8096/cameras/cam$i/whep" > "$DIR/aiortc$i.log" 2>&1 &
        : > "$DIR/viewer$i"
    else
        curl -s -o "$DIR/viewer$i" "http://127.0.0.1:8096/cameras/cam$i/stream" &
    fi
done
# Warm-up: every camera connected, the wall's tiles sized.
sleep 15
if [ -n "$TIMELAPSE" ]; then
    for i in $(seq 1 "$N"); do
        curl -sf -X POST -o /dev/null "http://127.0.0.1:8096/cameras/cam$i/timelapse/start?printer=p$i"
    done
    TL_START=$(date +%s.%N)
fi
bytes_sent() {
    curl -s http://127.0.0.1:8096/metrics | awk '/^farmcam_bytes_sent_total/{s+=$2} END{printf "%d\n", s}'
}
viewer_bytes() { cat "$DIR/viewer1" "$DIR/viewer2" | wc -c; }
b0=$(bytes_sent); v0=$(viewer_bytes)
t0=$(ticks "$FC"); s0=$(date +%s.%N)
sleep "$SECS"
t1=$(ticks "$FC"); s1=$(date +%s.%N)
b1=$(bytes_sent); v1=$(viewer_bytes)
read -r PSS PROCS < <(pss_kb "$FC")
if [ -n "$TIMELAPSE" ]; then
    # Every print ends: the renders (ffmpeg at idle priority) over the farm's own work.
    for i in $(seq 1 "$N"); do
        curl -sf -X POST -o /dev/null "http://127.0.0.1:8096/cameras/cam$i/timelapse/stop?outcome=complete"
    done
    PRINT_MIN=$(python3 -c "print(($(date +%s.%N)-$TL_START)/60)")
    r0=$(ticks "$FC"); rs0=$(date +%s.%N)
    # Polled once a second: the list reads the directory.
    until curl -s http://127.0.0.1:8096/api/timelapses | python3 -c "import json,sys; t=json.load(sys.stdin); sys.exit(0 if len(t)==$N and all(x['state']=='ready' for x in t) else 1)"; do
        sleep 1
    done
    r1=$(ticks "$FC"); rs1=$(date +%s.%N)
    curl -s http://127.0.0.1:8096/api/timelapses > "$DIR/timelapses.json"
fi
# By kind: farmcam itself, its shared decoder helper, its ffmpeg children.
OWN_PSS=$(awk '/^Pss:/{print $2}' "/proc/$FC/smaps_rollup")
# Where a process's PSS goes: libraries and the binary (file-backed) against its own memory.
split() { awk '/^Pss_File:/{f=$2} /^Pss_Anon:/{a=$2} END{printf "%.0f MB libraries and binary, %.0f MB its own memory", f/1024, a/1024}' "/proc/$1/smaps_rollup"; }
OWN_SPLIT=$(split "$FC")
HELPER_SPLIT="no helper"
HELPER_PSS=0; FF_PSS=0; FF_N=0
for c in $(cat /proc/"$FC"/task/*/children 2>/dev/null); do
    v=$(awk '/^Pss:/{print $2}' "/proc/$c/smaps_rollup" 2>/dev/null)
    if tr '\0' ' ' < "/proc/$c/cmdline" | grep -q decode-helper; then
        HELPER_PSS=$((HELPER_PSS + ${v:-0}))
        HELPER_SPLIT=$(split "$c")
    else
        FF_PSS=$((FF_PSS + ${v:-0})); FF_N=$((FF_N + 1))
    fi
done
RSS=$(rss_kb "$FC")
curl -s http://127.0.0.1:8096/api/cameras > "$DIR/status.json"
FARM_CPU=$(cpu_pct "$t0" "$t1" "$s0" "$s1")
WALL_BPS=$(python3 -c "print(int((($b1-$b0)-($v1-$v0))/($s1-$s0)))")
kill "$FC"; wait "$FC" 2>/dev/null || true
CLIENTS=$(grep -c client "$DIR/rtsp" || true)
pkill -f "user-data-dir=$DIR/chrome" 2>/dev/null || true
pkill -f "client.py --no-decode --whep http://127.0.0.1:8096" 2>/dev/null || true

# ffmpeg's floor for the same work, on the same server.
FLOOR=()
ff() {
    # As farmcam reads cameras (the looped clip restarts its timestamps, as printers do).
    ffmpeg -hide_banner -nostats -loglevel error -rtsp_transport tcp -use_wallclock_as_timestamps 1 "$@" </dev/null &
    FLOOR+=($!)
}
for i in $(seq 1 "$N"); do
    ff -i "$(src "$i")" -an -c:v copy -f h264 -y /dev/null
    ff -skip_frame nokey -i "$(src "$i")" -an -fps_mode passthrough -vf scale=320:-2 -c:v mjpeg -q:v 5 -f null -
done
if [ "$VIEWERS" = mjpeg ]; then
    for i in 1 2; do
        ff -i "$(src "$i")" -an -c:v mjpeg -q:v 5 -f mjpeg -y /dev/null
    done
fi
sleep 15
floor_ticks() { local p; for p in "${FLOOR[@]}"; do ticks "$p"; done | awk '{t += $1} END {printf "%.4f\n", t}'; }
floor_rss() { local r=0 p; for p in "${FLOOR[@]}"; do r=$((r + $(rss_kb "$p"))); done; echo $r; }
floor_pss() { local r=0 p; for p in "${FLOOR[@]}"; do r=$((r + $(pss_kb "$p" | cut -d' ' -f1))); done; echo $r; }
f0=$(floor_ticks); s0=$(date +%s.%N)
sleep "$SECS"
f1=$(floor_ticks); s1=$(date +%s.%N)
FLOOR_CPU=$(cpu_pct "$f0" "$f1" "$s0" "$s1")
FLOOR_RSS=$(floor_rss); FLOOR_PSS=$(floor_pss)
kill "${FLOOR[@]}" 2>/dev/null || true

per() { python3 -c "print(f'{$1/$N:.2f}')"; }
mb() { python3 -c "print(f'{$1/1024:.0f}')"; }
OPENS=$(python3 -c "import json;c=json.load(open('$DIR/status.json'));print(sorted(set(x['upstream_opens'] for x in c)))")
DECODERS=$(python3 -c "import json,collections;c=json.load(open('$DIR/status.json'));print(dict(collections.Counter(x.get('decoder') for x in c)))")
echo
echo "Farm: $N cameras, H.264 1280x720 at 30 fps (keyframe every 1 s); $WALLS wall page(s) in Chromium (1 Hz sized tiles), MQTT every 10 s, 2 full-rate $VIEWERS viewers; ${SECS} s"
echo "| | farmcam (+ ffmpeg children) | ffmpeg floor |"
echo "| --- | --- | --- |"
echo "| CPU, % of one core | $FARM_CPU % ($(per "$FARM_CPU") % per camera) | $FLOOR_CPU % ($(per "$FLOOR_CPU") % per camera) |"
echo "| RSS | $(mb "$RSS") MB ($(per "$RSS/1024") MB per camera) | $(mb "$FLOOR_RSS") MB |"
echo "| PSS | $(mb "$PSS") MB ($(per "$PSS/1024") MB per camera) | $(mb "$FLOOR_PSS") MB |"
echo "| processes | $PROCS | ${#FLOOR[@]} |"
echo
echo "PSS by process: farmcam $(mb "$OWN_PSS") MB, decoder helper $(mb "$HELPER_PSS") MB, $FF_N ffmpeg children $(mb "$FF_PSS") MB"
echo "farmcam: $OWN_SPLIT; decoder helper: $HELPER_SPLIT"
echo "decoded by at the end: $(python3 -c "import json,collections;c=json.load(open('$DIR/status.json'));print(dict(collections.Counter(x.get('decoded_by') for x in c)))")"
echo
echo "camera connections: upstream_opens per camera $OPENS; the RTSP server accepted $CLIENTS connections from farmcam"
echo "decoder modes at the end: $DECODERS"
echo "live viewers at the end: $(python3 -c "import json;c=json.load(open('$DIR/status.json'));k=[x['viewers_by_kind'] for x in c];print(sum(v['webrtc'] for v in k), 'WebRTC,', sum(v['mjpeg'] for v in k), 'MJPEG')")"
echo "the wall's bytes per second (snapshots): $WALL_BPS"
if [ -n "$TIMELAPSE" ]; then
    # The render phase's CPU beyond the farm's own rate, per camera and minute of print.
    RENDER_S=$(python3 -c "print(($r1-$r0)/100 - $FARM_CPU/100*($rs1-$rs0))")
    echo "timelapses: $N recorded for $(python3 -c "print(f'{$PRINT_MIN:.1f}')") min, $(python3 -c "import json;t=json.load(open('$DIR/timelapses.json'));print(sum(x['pictures'] for x in t), 'pictures,', round(sum(x['size'] for x in t)/1e6,1), 'MB of video')"); rendered in $(python3 -c "print(f'{$rs1-$rs0:.1f}')") s: $(python3 -c "print(f'{$RENDER_S:.1f}')") s of CPU, $(python3 -c "print(f'{$RENDER_S/$N/$PRINT_MIN:.2f}')") s per camera and minute of print"
fi
echo "| target | ratio |"
echo "| --- | --- |"
echo "| farmcam / ffmpeg floor (≤ 1.5) | $(python3 -c "print(f'{$FARM_CPU/$FLOOR_CPU:.2f}')") |"
