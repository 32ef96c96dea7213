#!/bin/bash
# farmcam vs µStreamer 4.9 (Debian `ustreamer`) on real V4L2 drivers, inside the qemu guest of
# tests/v4l2/guest.sh (software emulation: absolute numbers are slow, the ratio is what counts):
#   - MJPEG 1280x720 at 30 fps from v4l2loopback, fed by ffmpeg: passthrough in both daemons;
#   - vivid YUYV 640x480 at 25 fps (vivid's maximum at that size): encoded by both (quality 85).
# One daemon at a time on the same device and viewer load (`farmcam bench`); per run: the daemon's
# CPU (share of one core, from /proc/PID/stat), RSS, delivered fps per viewer. Each case runs RUNS
# times; the table gives medians and the farmcam/µStreamer CPU ratio.
# Run by hand, not in CI:  benches/compare_v4l2.sh [SECONDS] [RUNS] [VIEWER COUNTS...]
set -eu
cd "$(dirname "$0")/.."
if [ "${1:-}" != "--inside" ]; then
    command -v ustreamer >/dev/null 2>&1 ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ustreamer
    cargo build --release --bin farmcam
    FARMCAM_GUEST_TIMEOUT=3600 tests/v4l2/guest.sh bash benches/compare_v4l2.sh --inside "$@" |
        tee /dev/stderr | grep -a '^|' | tr -d '\r'
    exit 0
fi
shift
SECS=${1:-10}
RUNS=${2:-3}
shift 2 || true
COUNTS=${*:-1 20}
BIN=$PWD/target/release/farmcam
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

. benches/lib.sh

# One measured run: start the daemon ($1 farmcam|ustreamer) for case $2 (mjpeg|yuyv), N viewers.
run() {
    local daemon=$1 case=$2 n=$3 pid url
    if [ "$daemon" = farmcam ]; then
        if [ "$case" = mjpeg ]; then
            src="source = \"v4l2:/dev/video10\"
format = \"mjpeg\"
size = \"1280x720\"
fps = 30"
        else
            src="source = \"v4l2:/dev/video0\"
format = \"yuyv\"
size = \"640x480\"
fps = 25
quality = 85"
        fi
        printf '[http]\nlisten = "127.0.0.1:8090"\nmax_connections_per_client = 512\n[[camera]]\nid = "cam"\nidle_grace = "5m"\nwarmup_frames = 0\n%s\n' "$src" >"$DIR/f.toml"
        "$BIN" run --config "$DIR/f.toml" 2>/dev/null &
        pid=$!
        url=http://127.0.0.1:8090/cameras/cam/stream
    else
        if [ "$case" = mjpeg ]; then
            ustreamer -d /dev/video10 -m MJPEG -r 1280x720 -f 30 -c HW -s 127.0.0.1 -p 8091 >/dev/null 2>&1 &
        else
            ustreamer -d /dev/video0 -m YUYV -r 640x480 -f 25 -c CPU -q 85 -s 127.0.0.1 -p 8091 >/dev/null 2>&1 &
        fi
        pid=$!
        url=http://127.0.0.1:8091/stream
    fi
    # Warm up: the device opened and streaming (farmcam opens it for its first viewer).
    "$BIN" bench "$url" --viewers 1 --duration 5s >/dev/null 2>&1 || true
    local c0 t0 c1 t1 report
    c0=$(ticks $pid)
    t0=$(date +%s.%N)
    report=$("$BIN" bench "$url" --viewers "$n" --duration "${SECS}s" --json 2>/dev/null || echo '{}')
    c1=$(ticks $pid)
    t1=$(date +%s.%N)
    echo "$report" | python3 -c "
import json,sys
r=json.load(sys.stdin)
print(json.dumps({'cpu': ($c1-$c0)/100/($t1-$t0)*100, 'rss': $(rss_kb $pid)/1024,
  'fps_min': r.get('fps_min', 0), 'fps_median': r.get('fps_median', 0)}))" >>"$DIR/$daemon-$case-$n"
    kill $pid
    wait $pid 2>/dev/null || true
    sleep 1
}

ffmpeg -hide_banner -nostdin -loglevel error -re -f lavfi -i testsrc2=size=1280x720:rate=30 \
    -c:v mjpeg -q:v 5 -f v4l2 /dev/video10 &
sleep 10
for case in mjpeg yuyv; do
    for n in $COUNTS; do
        for r in $(seq "$RUNS"); do
            run farmcam $case "$n"
            run ustreamer $case "$n"
        done
    done
done

nproc_=$(nproc)
python3 - "$DIR" "$COUNTS" "$nproc_" <<'EOF'
import json, statistics, sys
d, counts, cpus = sys.argv[1], sys.argv[2].split(), sys.argv[3]
def med(daemon, case, n, key):
    rows = [json.loads(l) for l in open(f"{d}/{daemon}-{case}-{n}")]
    return statistics.median(r[key] for r in rows)
print(f"| case | viewers | farmcam CPU | µStreamer CPU | ratio farmcam/µStreamer | ratio per delivered frame | farmcam fps min / median | µStreamer fps min / median | farmcam RSS | µStreamer RSS |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for case, label in [("mjpeg", "MJPEG 1280x720@30 passthrough (v4l2loopback)"), ("yuyv", "YUYV 640x480@25 encode (vivid)")]:
    for n in counts:
        f, u = med("farmcam", case, n, "cpu"), med("ustreamer", case, n, "cpu")
        ff, uf = med("farmcam", case, n, "fps_median"), med("ustreamer", case, n, "fps_median")
        print(f"| {label} | {n} | {f:.1f} % | {u:.1f} % | {f/u:.2f} | {(f/ff)/(u/uf):.2f} | "
              f"{med('farmcam', case, n, 'fps_min'):.1f} / {med('farmcam', case, n, 'fps_median'):.1f} | "
              f"{med('ustreamer', case, n, 'fps_min'):.1f} / {med('ustreamer', case, n, 'fps_median'):.1f} | "
              f"{med('farmcam', case, n, 'rss'):.0f} MB | {med('ustreamer', case, n, 'rss'):.0f} MB |")
print(f"| (guest: qemu TCG, {cpus} vCPUs; medians of the runs) | | | | | | | | | |")
EOF
