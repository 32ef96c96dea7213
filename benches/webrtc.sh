#!/bin/bash
# Live viewers of one H.264 camera (GStreamer's test server: 1280x720, 30 fps, a keyframe every
# second): CPU of farmcam and its ffmpeg children, and bytes per second per viewer, for 1, 5 and
# 20 WebRTC viewers next to 1, 5 and 20 MJPEG viewers and `ffmpeg -c:v copy` (the floor: what
# the camera connection alone costs), all in one run; then the time from the signalling POST to
# the first decoded frame, on a camera already connected. Each case warms up for 5 s, then is
# measured for SECONDS. The one-viewer case and the floor, whose ratio is the target, are
# measured ROUNDS times, alternately (the machine's load drifts between runs of each); their
# figures are the means. Run by hand, not in CI (needs `packaging/dev.sh deps` for aiortc):
#   benches/webrtc.sh [SECONDS] [ROUNDS]        (defaults 20, 3)
# WebRTC viewers are aiortc (tests/peers/aiortc) receiving without decoding (--no-decode), so
# 20 of them fit on the same 2 cores; MJPEG viewers are curl.
set -eu
cd "$(dirname "$0")/.."
. benches/lib.sh
SECS=${1:-20}
ROUNDS=${2:-3}
aiortc_bench_setup

rtsp_test_camera
URL=http://127.0.0.1:8096/cameras/cam

cat > "$DIR/farmcam.toml" <<TOML
[http]
listen = "127.0.0.1:8096"
[webrtc]
listen = "127.0.0.1:8556"
max_sessions = 64
max_sessions_per_client = 64
[[camera]]
id = "cam"
source = "$SRC"
idle_grace = "2s"
TOML

status() { curl -s http://127.0.0.1:8096/api/cameras | python3 -c "import json,sys; c=json.load(sys.stdin)[0]; print(c['$1'])"; }
connected() { curl -s http://127.0.0.1:8096/api/cameras | python3 -c "import json,sys; c=json.load(sys.stdin)[0]; print(sum(s['connected'] for s in c['webrtc_sessions']))"; }
# A counter of the camera from /metrics (farmcam_NAME{camera="cam"}).
metric() { curl -s http://127.0.0.1:8096/metrics | awk -v m="farmcam_$1{camera=\"cam\"}" '$1 == m {print $2}'; }

# One case: farmcam with N viewers of a kind; prints "CPU% bytes/s-per-viewer decoder".
farmcam_case() {
    local kind=$1 n=$2 pid t0 s0 t1 s1 b0 b1 i key dec sessions
    $BIN run --config "$DIR/farmcam.toml" 2>"$DIR/farmcam.log" &
    pid=$!
    wait_until 60 "farmcam at http://127.0.0.1:8096/api/cameras" curl -sf -o /dev/null http://127.0.0.1:8096/api/cameras
    local viewers=()
    for i in $(seq "$n"); do
        if [ "$kind" = webrtc ]; then
            $AIORTC --no-decode --whep "$URL/whep" > "$DIR/viewer$i" 2>/dev/null &
        else
            curl -s -o /dev/null "$URL/stream" &
        fi
        viewers+=($!)
    done
    key=$([ "$kind" = webrtc ] && echo webrtc_bytes_sent_total || echo bytes_sent_total)
    # Every viewer watching (20 aiortc processes take a while to start on 2 cores), then 5 s.
    for i in $(seq 600); do
        [ "$(status viewers)" -ge "$n" ] && [ "$kind" = mjpeg -o "$(connected)" -ge "$n" ] && break
        sleep 0.1
    done
    sleep 5
    t0=$(ticks "$pid"); s0=$(date +%s.%N); b0=$(metric "$key")
    sleep "$SECS"
    t1=$(ticks "$pid"); s1=$(date +%s.%N); b1=$(metric "$key")
    dec=$(status decoder); sessions=$(status viewers)
    kill "${viewers[@]}" 2>/dev/null || true
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$(cpu_pct "$t0" "$t1" "$s0" "$s1") $(python3 -c "print(round(($b1-$b0)/($s1-$s0)/$n/1000))") $dec $sessions"
}

declare -A R
for n in 5 20; do
    R[webrtc$n]=$(farmcam_case webrtc "$n")
    R[mjpeg$n]=$(farmcam_case mjpeg "$n")
done
R[mjpeg1]=$(farmcam_case mjpeg 1)
ONE=() FLOORS=()
for r in $(seq "$ROUNDS"); do
    ONE+=("$(farmcam_case webrtc 1)")
    FLOORS+=("$(ffmpeg_copy)")
done
# The one-viewer case: mean CPU, the other columns of its first round.
R[webrtc1]="$(mean $(printf '%s\n' "${ONE[@]}" | awk '{print $1}')) $(echo "${ONE[0]}" | cut -d' ' -f2-)"
FLOOR=$(mean "${FLOORS[@]}")

# First frame: farmcam connected to the camera (one viewer already watching), then a new
# viewer that decodes; five times.
$BIN run --config "$DIR/farmcam.toml" 2>"$DIR/farmcam.log" &
FPID=$!
wait_until 60 "farmcam at http://127.0.0.1:8096/api/cameras" curl -sf -o /dev/null http://127.0.0.1:8096/api/cameras
$AIORTC --no-decode --whep "$URL/whep" > /dev/null 2>&1 &
KEEP=$!
sleep 5
FIRST=""
for i in 1 2 3 4 5; do
    ms=$(timeout 30 $AIORTC --whep "$URL/whep" --frames 1 | python3 -c "import json,sys
for l in sys.stdin:
    v = json.loads(l)
    if 'first_frame_ms' in v: print(v['first_frame_ms']); break")
    FIRST="$FIRST $ms"
done
kill "$KEEP" "$FPID"; wait "$FPID" 2>/dev/null || true

col() { echo "${R[$1]}" | awk -v i="$2" '{print $i}'; }
ratio() { python3 -c "a,b=$1,$2; print(f'{a/b:.2f}' if b > 0 else 'n/a')"; }
echo
echo "H.264 1280x720 at 30 fps, keyframe every 1 s; CPU % of one core over ${SECS} s (farmcam + its children; one viewer and the floor: means of $ROUNDS rounds)"
echo "| viewers | WebRTC CPU | WebRTC kB/s per viewer | MJPEG CPU | MJPEG kB/s per viewer | decoder (WebRTC / MJPEG), viewers seen |"
echo "| --- | --- | --- | --- | --- | --- |"
for n in 1 5 20; do
    echo "| $n | $(col webrtc$n 1) % | $(col webrtc$n 2) | $(col mjpeg$n 1) % | $(col mjpeg$n 2) | $(col webrtc$n 3) / $(col mjpeg$n 3), $(col webrtc$n 4) / $(col mjpeg$n 4) |"
done
echo "| ffmpeg -c:v copy (floor) | $FLOOR % | | | | |"
echo
echo "One viewer and the floor, round by round (CPU %): $(for r in $(seq 0 $((ROUNDS - 1))); do echo -n "$(echo "${ONE[$r]}" | awk '{print $1}') / ${FLOORS[$r]}; "; done)"
echo
echo "First decoded frame after the POST (ms, camera connected):$FIRST"
echo
per_viewer=$(python3 -c "print(f'{($(col webrtc20 1)-$(col webrtc1 1))/19:.2f}')")
echo "| target | measured |"
echo "| --- | --- |"
echo "| one WebRTC viewer ≤ 1.5 × the copy floor | $(ratio "$(col webrtc1 1)" "$FLOOR") |"
echo "| each further WebRTC viewer ≤ 0.2 % of a core | $per_viewer % |"
echo "| WebRTC bytes per viewer ≤ 1/4 of MJPEG's | $(ratio "$(col webrtc1 2)" "$(col mjpeg1 2)") |"
echo "| first frame ≤ 1 s on a connected camera | $FIRST ms |"
