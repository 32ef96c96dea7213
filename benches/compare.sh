#!/bin/bash
# farmcam vs Motion 4.5.1 (Debian `motion`), side by side on the same RTSP source: GStreamer's
# test server, H.264 1280x720 at 30 fps. Both daemons run during the whole run; the viewer load
# (`farmcam bench`) goes to one at a time. Per daemon and run: CPU (share of one core, its
# children such as farmcam's ffmpeg included), peak RSS (sampled every 0.5 s, children included),
# delivered fps per viewer, latency where the server sends X-Timestamp. Each case runs RUNS times;
# the table gives medians and the farmcam/Motion ratios. Run by hand, not in CI:
#   benches/compare.sh [SECONDS] [RUNS] [VIEWER COUNTS...]      e.g. benches/compare.sh 10 3 0 1 10 50 100
set -eu
cd "$(dirname "$0")/.."
. benches/lib.sh
SECS=${1:-10}
RUNS=${2:-3}
shift 2 || true
COUNTS=${*:-0 1 10 50 100}
BIN=target/release/farmcam
# The peers: Debian's Motion, and the GStreamer RTSP server the tests use.
command -v motion >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends motion
cargo build --release --bin farmcam
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
wait_until 60 "the RTSP test server" grep -q ready "$DIR/rtsp"
PORT=$(awk '{print $2}' "$DIR/rtsp")
SRC="rtsp://127.0.0.1:$PORT/cam"

cat > "$DIR/farmcam.toml" <<TOML
[http]
listen = "127.0.0.1:8090"
# Every load-generator viewer comes from 127.0.0.1.
max_connections_per_client = 512
[[camera]]
id = "printer"
source = "$SRC"
# Keep the camera open between runs, as Motion does.
idle_grace = "5m"
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
# farmcam opens the camera for its first viewer: open it once before measuring.
$BIN bench http://127.0.0.1:8090/cameras/printer/stream --viewers 1 --duration 5s >/dev/null 2>&1 || true

# Highest RSS of $1 (with children) until $2 exists.
peak_rss() {
    local max=0 r
    while [ ! -e "$2" ]; do
        r=$(rss_kb "$1")
        [ "$r" -gt "$max" ] && max=$r
        sleep 0.5
    done
    echo "$max"
}

for n in $COUNTS; do
    for _ in $(seq "$RUNS"); do
        for d in farmcam motion; do
            if [ "$d" = farmcam ]; then pid=$FARMCAM; url=http://127.0.0.1:8090/cameras/printer/stream
            else pid=$MOTION; url=http://127.0.0.1:8091/; fi
            rm -f "$DIR/done"
            peak_rss $pid "$DIR/done" >"$DIR/peak" &
            sampler=$!
            c0=$(ticks $pid); t0=$(date +%s.%N)
            if [ "$n" -gt 0 ]; then
                report=$($BIN bench "$url" --viewers "$n" --duration "${SECS}s" --json 2>/dev/null || echo '{}')
            else
                sleep "$SECS"; report='{}'
            fi
            c1=$(ticks $pid); t1=$(date +%s.%N)
            touch "$DIR/done"
            wait $sampler
            echo "$report" | python3 -c "
import json,sys
r=json.load(sys.stdin)
lat=r.get('latency_ms') or {}
print(json.dumps({'cpu': ($c1-$c0)/100/($t1-$t0)*100, 'rss': $(cat "$DIR/peak")/1024,
  'fps_min': r.get('fps_min'), 'fps_median': r.get('fps_median'),
  'frames': r.get('frames', 0), 'secs': $t1-$t0,
  'p50': lat.get('p50'), 'p99': lat.get('p99')}))" >>"$DIR/$d-$n"
        done
    done
done

python3 - "$DIR" "$COUNTS" "$(nproc)" <<'EOF'
import json, statistics, sys
d, counts, cpus = sys.argv[1], sys.argv[2].split(), sys.argv[3]
def rows(daemon, n):
    return [json.loads(l) for l in open(f"{d}/{daemon}-{n}")]
def med(daemon, n, key):
    v = [r[key] for r in rows(daemon, n) if r[key] is not None]
    return statistics.median(v) if v else None
def per_frame(daemon, n):
    # CPU µs per frame delivered to all viewers (median over runs).
    v = [r["cpu"] / 100 * r["secs"] * 1e6 / r["frames"] for r in rows(daemon, n) if r["frames"]]
    return statistics.median(v) if v else None
print("| viewers | farmcam CPU | Motion CPU | ratio | CPU µs per delivered frame, farmcam / Motion (ratio) "
      "| farmcam fps min / median | Motion fps min / median | farmcam peak RSS | Motion peak RSS | farmcam latency p50 / p99 |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for n in counts:
    f, m = med("farmcam", n, "cpu"), med("motion", n, "cpu")
    ratio = f"{f / m:.2f}" if m else "–"
    pf, pm = per_frame("farmcam", n), per_frame("motion", n)
    frame = f"{pf:.0f} / {pm:.0f} ({pf / pm:.2f})" if pf and pm else "–"
    fps = lambda dm: (f"{med(dm, n, 'fps_min'):.1f} / {med(dm, n, 'fps_median'):.1f}"
                      if med(dm, n, "fps_min") is not None else "–")
    lat = (f"{med('farmcam', n, 'p50'):.2f} / {med('farmcam', n, 'p99'):.1f} ms"
           if med("farmcam", n, "p50") is not None else "–")
    print(f"| {n} | {f:.1f} % | {m:.1f} % | {ratio} | {frame} | {fps('farmcam')} | {fps('motion')} | "
          f"{med('farmcam', n, 'rss'):.0f} MB | {med('motion', n, 'rss'):.0f} MB | {lat} |")
print(f"| ({cpus} cores; medians of {len(rows('farmcam', counts[0]))} runs) | | | | | | | | | |")
EOF
