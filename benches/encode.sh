#!/bin/bash
# Live H.264 of a camera that sends pictures (issue 41): one 1280x720 30 fps `test:` camera with
# h264_encoder = "software" (libx264 in farmcam's helper). CPU of farmcam and its helper with 1
# and 5 WebRTC viewers, against the same pictures encoded by ffmpeg's own libx264 (`-preset
# ultrafast -tune zerolatency`, reading farmcam's MJPEG stream: farmcam serving that stream plus
# ffmpeg's CPU), all in one run; bytes per viewer against the MJPEG stream; an MJPEG viewer's
# CPU with the encoder configured and with it off; the first decoded frame on an idle camera.
# Each case warms up for 5 s, then is measured for SECONDS. Run by hand, not in CI:
#   benches/encode.sh [SECONDS]        (default 20)
set -eu
cd "$(dirname "$0")/.."
. benches/lib.sh
SECS=${1:-20}
aiortc_bench_setup
URL=http://127.0.0.1:8097/cameras/cam

config() {
    cat > "$DIR/farmcam.toml" <<TOML
[http]
listen = "127.0.0.1:8097"
[webrtc]
listen = "127.0.0.1:8557"
[[camera]]
id = "cam"
source = "test:"
size = "1280x720"
fps = 30
idle_grace = "2s"
h264_encoder = "$1"
TOML
}

status() { curl -s http://127.0.0.1:8097/api/cameras | python3 -c "import json,sys; c=json.load(sys.stdin)[0]; print(c['$1'])"; }
connected() { curl -s http://127.0.0.1:8097/api/cameras | python3 -c "import json,sys; c=json.load(sys.stdin)[0]; print(sum(s['connected'] for s in c['webrtc_sessions']))"; }
metric() { curl -s http://127.0.0.1:8097/metrics | awk -v m="farmcam_$1{camera=\"cam\"}" '$1 == m {print $2}'; }

start_farmcam() {
    $BIN run --config "$DIR/farmcam.toml" 2>"$DIR/farmcam.log" &
    FPID=$!
    wait_until 60 "farmcam at http://127.0.0.1:8097/api/cameras" curl -sf -o /dev/null http://127.0.0.1:8097/api/cameras
}

# farmcam's own process, without its children (the helper, where the encoder runs).
own_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

# One case: N viewers of a kind (webrtc, mjpeg, ffmpeg: ffmpeg's libx264 on the MJPEG stream);
# prints "farmcam-CPU% bytes/s-per-viewer-kB encoder other-CPU% farmcam-process-alone-CPU%".
farmcam_case() {
    local kind=$1 n=$2 t0 s0 t1 s1 b0 b1 i key enc o0 o1 other=0 p0 p1
    start_farmcam
    local viewers=()
    for i in $(seq "$n"); do
        case $kind in
            webrtc) $AIORTC --no-decode --whep "$URL/whep" > "$DIR/viewer$i" 2>/dev/null & ;;
            mjpeg) curl -s -o /dev/null "$URL/stream" & ;;
            ffmpeg) ffmpeg -hide_banner -nostats -loglevel error -f mjpeg -i "$URL/stream" -an \
                -c:v libx264 -preset ultrafast -tune zerolatency -f null - </dev/null & ;;
        esac
        viewers+=($!)
    done
    key=$([ "$kind" = webrtc ] && echo webrtc_bytes_sent_total || echo bytes_sent_total)
    for i in $(seq 600); do
        [ "$(status viewers)" -ge "$n" ] && [ "$kind" != webrtc -o "$(connected)" -ge "$n" ] && break
        sleep 0.1
    done
    sleep 5
    t0=$(ticks "$FPID"); s0=$(date +%s.%N); b0=$(metric "$key"); p0=$(own_ticks "$FPID")
    [ "$kind" = ffmpeg ] && o0=$(ticks "${viewers[0]}")
    sleep "$SECS"
    t1=$(ticks "$FPID"); s1=$(date +%s.%N); b1=$(metric "$key"); p1=$(own_ticks "$FPID")
    [ "$kind" = ffmpeg ] && o1=$(ticks "${viewers[0]}") && other=$(cpu_pct "$o0" "$o1" "$s0" "$s1")
    enc=$(status encoder)
    kill "${viewers[@]}" 2>/dev/null || true
    kill "$FPID"; wait "$FPID" 2>/dev/null || true
    echo "$(cpu_pct "$t0" "$t1" "$s0" "$s1") $(python3 -c "print(round(($b1-$b0)/($s1-$s0)/$n/1000))") $enc $other $(cpu_pct "$p0" "$p1" "$s0" "$s1")"
}

declare -A R
config software
for n in 1 5; do
    R[webrtc$n]=$(farmcam_case webrtc "$n")
done
R[mjpeg1]=$(farmcam_case mjpeg 1)
R[ffmpeg1]=$(farmcam_case ffmpeg 1)
config off
R[mjpeg_off]=$(farmcam_case mjpeg 1)
config software

# First frame on an idle camera (no encoder running): five times, the encoder stopped between.
start_farmcam
FIRST=""
for i in 1 2 3 4 5; do
    for j in $(seq 300); do [ "$(status encoder)" = None ] && break; sleep 0.1; done
    sleep 3
    ms=$(timeout 30 $AIORTC --whep "$URL/whep" --frames 1 | python3 -c "import json,sys
for l in sys.stdin:
    v = json.loads(l)
    if 'first_frame_ms' in v: print(v['first_frame_ms']); break")
    FIRST="$FIRST $ms"
done
kill "$FPID"; wait "$FPID" 2>/dev/null || true

col() { echo "${R[$1]}" | awk -v i="$2" '{print $i}'; }
ratio() { python3 -c "a,b=$1,$2; print(f'{a/b:.2f}' if b > 0 else 'n/a')"; }
PEER=$(python3 -c "print(f'{$(col ffmpeg1 1)+$(col ffmpeg1 4):.1f}')")
echo
echo "test: 1280x720 at 30 fps, h264_encoder = \"software\"; CPU % of one core over ${SECS} s (farmcam + its helper)"
echo "| case | CPU | kB/s per viewer | encoder |"
echo "| --- | --- | --- | --- |"
echo "| 1 WebRTC viewer | $(col webrtc1 1) % (farmcam's process $(col webrtc1 5) %) | $(col webrtc1 2) | $(col webrtc1 3) |"
echo "| 5 WebRTC viewers | $(col webrtc5 1) % (farmcam's process $(col webrtc5 5) %) | $(col webrtc5 2) | $(col webrtc5 3) |"
echo "| 1 MJPEG viewer | $(col mjpeg1 1) % | $(col mjpeg1 2) | $(col mjpeg1 3) |"
echo "| 1 MJPEG viewer, h264_encoder = \"off\" | $(col mjpeg_off 1) % | $(col mjpeg_off 2) | |"
echo "| peer: ffmpeg libx264 ultrafast/zerolatency on the MJPEG stream | $PEER % (farmcam $(col ffmpeg1 1) % + ffmpeg $(col ffmpeg1 4) %) | | |"
echo
echo "First decoded frame on an idle camera (ms, from the POST):$FIRST"
echo
echo "| target | measured |"
echo "| --- | --- |"
echo "| one WebRTC viewer ≤ 1.3 × ffmpeg's libx264 on the same pictures | $(ratio "$(col webrtc1 1)" "$PEER") |"
echo "| each further WebRTC viewer ≤ 0.2 % of a core | $(python3 -c "print(f'{($(col webrtc5 1)-$(col webrtc1 1))/4:.2f}')") % (farmcam's process, which sends: $(python3 -c "print(f'{($(col webrtc5 5)-$(col webrtc1 5))/4:.2f}')") %; the helper, which encodes once for all: $(python3 -c "print(f'{(($(col webrtc5 1)-$(col webrtc5 5))-($(col webrtc1 1)-$(col webrtc1 5)))/4:.2f}')") %) |"
echo "| WebRTC bytes per viewer ≤ 1/4 of MJPEG's | $(ratio "$(col webrtc1 2)" "$(col mjpeg1 2)") |"
echo "| an MJPEG viewer's CPU unchanged by the encoder (software / off) | $(ratio "$(col mjpeg1 1)" "$(col mjpeg_off 1)") |"
