#!/bin/bash
# RTSP clients of one H.264 camera (GStreamer's test server: 1280x720, 30 fps, a keyframe every
# second): CPU of farmcam and its ffmpeg children, and bytes per second per client, for 1, 5 and
# 20 clients over TCP (interleaved) and 20 over UDP, next to `ffmpeg -c:v copy` on the same
# source (the floor: what the camera connection alone costs), all in one run. Each case warms up
# for 5 s, then is measured for SECONDS. Run by hand, not in CI:
#   benches/rtsp_out.sh [SECONDS]        (default 20)
# Clients are ffmpeg copying the stream to nowhere (`-c copy -f null`): they depacketize but do
# not decode, so 20 of them fit on the same 2 cores; their own CPU is not counted.
set -eu
cd "$(dirname "$0")/.."
. benches/lib.sh
SECS=${1:-20}
BIN=target/release/farmcam
cargo build --release --bin farmcam
DIR=$(mktemp -d)
cleanup() {
    kill $(jobs -p) 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

rtsp_test_camera
OUT=rtsp://127.0.0.1:8597/cam

cat > "$DIR/farmcam.toml" <<TOML
[http]
listen = "127.0.0.1:8096"
[rtsp]
listen = "127.0.0.1:8597"
udp_port = 18000
max_sessions = 64
max_sessions_per_client = 64
[[camera]]
id = "cam"
source = "$SRC"
idle_grace = "2s"
TOML

sessions() { curl -s http://127.0.0.1:8096/api/cameras | python3 -c "import json,sys; c=json.load(sys.stdin)[0]; print(sum(s['playing'] for s in c['rtsp_sessions']))"; }
metric() { curl -s http://127.0.0.1:8096/metrics | awk -v m="farmcam_$1{camera=\"cam\"}" '$1 == m {print $2}'; }

# One case: farmcam with N clients over a transport; prints "CPU% bytes/s-per-client sessions".
farmcam_case() {
    local transport=$1 n=$2 pid t0 s0 t1 s1 b0 b1 i seen
    $BIN run --config "$DIR/farmcam.toml" 2>"$DIR/farmcam.log" &
    pid=$!
    wait_until 60 "farmcam at http://127.0.0.1:8096/api/cameras" curl -sf -o /dev/null http://127.0.0.1:8096/api/cameras
    local clients=()
    for i in $(seq "$n"); do
        ffmpeg -hide_banner -nostats -loglevel error -rtsp_transport "$transport" -i "$OUT" -c copy -f null - </dev/null &
        clients+=($!)
    done
    for i in $(seq 600); do
        [ "$(sessions)" -ge "$n" ] && break
        sleep 0.1
    done
    sleep 5
    t0=$(ticks "$pid"); s0=$(date +%s.%N); b0=$(metric rtsp_bytes_sent_total)
    sleep "$SECS"
    t1=$(ticks "$pid"); s1=$(date +%s.%N); b1=$(metric rtsp_bytes_sent_total)
    seen=$(sessions)
    kill "${clients[@]}" 2>/dev/null || true
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$(cpu_pct "$t0" "$t1" "$s0" "$s1") $(python3 -c "print(round(($b1-$b0)/($s1-$s0)/$n/1000))") $seen"
}

declare -A R
for n in 1 5 20; do
    R[tcp$n]=$(farmcam_case tcp "$n")
done
R[udp20]=$(farmcam_case udp 20)
FLOOR=$(ffmpeg_copy)

col() { echo "${R[$1]}" | awk -v i="$2" '{print $i}'; }
ratio() { python3 -c "a,b=$1,$2; print(f'{a/b:.2f}' if b > 0 else 'n/a')"; }
echo
echo "H.264 1280x720 at 30 fps, keyframe every 1 s; CPU % of one core over ${SECS} s (farmcam + its ffmpeg children)"
echo "| clients | transport | CPU | kB/s per client | sessions playing |"
echo "| --- | --- | --- | --- | --- |"
for c in tcp1 tcp5 tcp20 udp20; do
    echo "| ${c#???} | ${c%%[0-9]*} | $(col $c 1) % | $(col $c 2) | $(col $c 3) |"
done
echo "| ffmpeg -c:v copy (floor) | | $FLOOR % | | |"
echo
per=$(python3 -c "print(f'{($(col tcp20 1)-$(col tcp1 1))/19:.2f}')")
echo "| target | measured |"
echo "| --- | --- |"
echo "| one client ≤ 1.5 × the copy floor | $(ratio "$(col tcp1 1)" "$FLOOR") |"
echo "| each further client ≤ 0.2 % of a core | $per % (TCP) |"
