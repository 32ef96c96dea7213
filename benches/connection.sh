#!/bin/bash
# The camera connection alone against ffmpeg's copy (issue 40): farmcam holding one H.264 camera
# open (GStreamer's test server: 1280x720, 30 fps, a keyframe every second) with nobody watching
# — kept in its idle grace after one WebRTC viewer left, decoder off — next to
# `ffmpeg -c:v copy` of the same camera. Each is measured for SECONDS, ROUNDS times alternately
# (the floor drifts with the machine's load); the ratio is that of the means. Run by hand, not in
# CI (needs `packaging/dev.sh deps` for aiortc):
#   benches/connection.sh [SECONDS] [ROUNDS]        (defaults 20, 3)
set -eu
cd "$(dirname "$0")/.."
. benches/lib.sh
SECS=${1:-20}
ROUNDS=${2:-3}
aiortc_bench_setup

rtsp_test_camera
API=http://127.0.0.1:8096/api/cameras

cat > "$DIR/farmcam.toml" <<TOML
[http]
listen = "127.0.0.1:8096"
[webrtc]
listen = "127.0.0.1:8556"
connect_timeout = "3s"
[[camera]]
id = "cam"
source = "$SRC"
idle_grace = "10m"
TOML

camera() { curl -s "$API" | python3 -c "import json,sys; c=json.load(sys.stdin)[0]; print(c['$1'])"; }
# Connected, watched by nobody: no session left, the decoder off, units flowing.
idle() { [ "$(camera webrtc_sessions)" = "[]" ] && [ "$(camera decoder)" = off ] && [ "$(camera state)" = live ]; }

connection_case() {
    local pid t0 s0 t1 s1
    $BIN run --config "$DIR/farmcam.toml" 2>"$DIR/farmcam.log" &
    pid=$!
    wait_until 60 "farmcam at $API" curl -sf -o /dev/null "$API"
    # One viewer opens the camera, then leaves without saying so (its session times out).
    timeout 60 $AIORTC --whep http://127.0.0.1:8096/cameras/cam/whep --frames 30 > /dev/null 2>&1 || true
    wait_until 120 "the camera connected with nobody watching" idle
    sleep 5
    t0=$(ticks "$pid"); s0=$(date +%s.%N)
    sleep "$SECS"
    t1=$(ticks "$pid"); s1=$(date +%s.%N)
    idle || { echo "bench: the camera did not stay connected and idle" >&2; exit 1; }
    kill "$pid"; wait "$pid" 2>/dev/null || true
    cpu_pct "$t0" "$t1" "$s0" "$s1"
}

CONN=() FLOORS=()
for r in $(seq "$ROUNDS"); do
    CONN+=("$(connection_case)")
    FLOORS+=("$(ffmpeg_copy)")
done
echo
echo "H.264 1280x720 at 30 fps, keyframe every 1 s; CPU % of one core over ${SECS} s, $ROUNDS rounds"
echo "| | rounds | mean |"
echo "| --- | --- | --- |"
echo "| farmcam, camera connected, nobody watching | ${CONN[*]} | $(mean "${CONN[@]}") % |"
echo "| ffmpeg -c:v copy (floor) | ${FLOORS[*]} | $(mean "${FLOORS[@]}") % |"
echo "| farmcam / floor | | $(python3 -c "print(f'{$(mean "${CONN[@]}")/$(mean "${FLOORS[@]}"):.2f}')") |"
