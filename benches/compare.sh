#!/bin/bash
# farmcam vs Motion 4.5.1 (Debian `motion`), side by side on the same RTSP source: GStreamer's
# test server, H.264 1280x720 at 30 fps. Both daemons run during the whole run; the viewer load
# (`farmcam bench`) goes to one at a time. Per daemon: CPU (share of one core, its children such
# as farmcam's ffmpeg included), RSS, delivered fps per viewer, latency where the server sends
# X-Timestamp. Run by hand, not in CI:  benches/compare.sh [SECONDS] [VIEWER COUNTS...]
set -eu
cd "$(dirname "$0")/.."
SECS=${1:-10}
shift || true
COUNTS=${*:-0 1 10 50 100}
BIN=target/release/farmcam
# The peers: Debian's Motion, and the GStreamer RTSP server the tests use.
command -v motion >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends motion
[ -x "$BIN" ] || cargo build --release
DIR=$(mktemp -d)
cleanup() {
    kill $(jobs -p) 2>/dev/null || true
    sleep 2
    # Motion does not always exit on SIGTERM.
    kill -9 $(jobs -p) 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

/usr/bin/python3 tests/peers/rtsp_server.py --size 1280x720 --fps 30 > "$DIR/rtsp" &
until grep -q ready "$DIR/rtsp"; do sleep 0.1; done
PORT=$(awk '{print $2}' "$DIR/rtsp")
SRC="rtsp://127.0.0.1:$PORT/cam"

cat > "$DIR/farmcam.toml" <<TOML
[http]
listen = "127.0.0.1:8090"
[[camera]]
id = "printer"
source = "$SRC"
idle_grace = "30s"
# The same JPEG quality as Motion's stream_quality below.
quality = 50
TOML
$BIN run --config "$DIR/farmcam.toml" 2>/dev/null &
FARMCAM=$!

mkdir -p "$DIR/motion"
cat > "$DIR/motion.conf" <<CONF
daemon off
setup_mode off
log_level 1
target_dir $DIR/motion
netcam_url $SRC
netcam_params rtsp_transport=tcp
width 1280
height 720
framerate 30
stream_port 8091
stream_localhost on
stream_maxrate 30
stream_quality 50
stream_motion off
webcontrol_port 0
picture_output off
movie_output off
snapshot_interval 0
threshold 100000000
CONF
motion -n -c "$DIR/motion.conf" >/dev/null 2>&1 &
MOTION=$!
sleep 5

# CPU ticks of a process and its live children (+ reaped children's time).
ticks() {
    local pid=$1 t
    t=$(awk '{print $14+$15+$16+$17}' "/proc/$pid/stat")
    for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        t=$((t + $(awk '{print $14+$15}' "/proc/$c/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}
rss_kb() {
    local pid=$1 r
    r=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
    for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        r=$((r + $(awk '/VmRSS/{print $2}' "/proc/$c/status" 2>/dev/null || echo 0)))
    done
    echo "$r"
}

echo "| daemon | viewers | CPU (one core, incl. children) | RSS | fps per viewer (min / median) | latency p50 / p99 |"
echo "| --- | --- | --- | --- | --- | --- |"
for n in $COUNTS; do
    for d in farmcam motion; do
        if [ "$d" = farmcam ]; then pid=$FARMCAM; url=http://127.0.0.1:8090/cameras/printer/stream
        else pid=$MOTION; url=http://127.0.0.1:8091/; fi
        c0=$(ticks $pid); t0=$(date +%s.%N)
        if [ "$n" -gt 0 ]; then
            report=$($BIN bench "$url" --viewers "$n" --duration "${SECS}s" --json 2>/dev/null || true)
        else
            sleep "$SECS"; report='{}'
        fi
        c1=$(ticks $pid); t1=$(date +%s.%N)
        rss=$(rss_kb $pid)
        echo "$report" | python3 -c "
import json,sys
r=json.load(sys.stdin)
cpu=($c1-$c0)/100/($t1-$t0)*100
lat=r.get('latency_ms') or {}
fps=f\"{r['fps_min']} / {r['fps_median']}\" if 'fps_min' in r else '–'
l=f\"{lat['p50']} / {lat['p99']} ms\" if lat else '–'
print(f'| $d | $n | {cpu:.1f} % | {$rss/1024:.0f} MB | {fps} | {l} |')
"
        # Let farmcam's grace keep the camera open between runs (idle_grace 30s) like Motion.
    done
done
