#!/bin/bash
# Cost follows demand: CPU of farmcam and its ffmpeg children for the usual consumers of one H.264
# camera (GStreamer's test server: 1280x720, 30 fps, a keyframe every second), next to what
# ffmpeg alone needs for the same work on the same source, measured in the same run. Each case
# warms up for 5 s, then is measured for SECONDS. Run by hand, not in CI:
#   benches/demand.sh [SECONDS]        (default 30)
set -eu
cd "$(dirname "$0")/.."
. benches/lib.sh
SECS=${1:-30}
BIN=target/release/farmcam
cargo build --release --bin farmcam
DIR=$(mktemp -d)
cleanup() {
    kill $(jobs -p) 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

rtsp_test_camera

# CPU (% of one core) of process tree $1 over SECS, after a 5 s warm-up.
cpu_of() {
    local pid=$1 t0 s0 t1 s1
    sleep 5
    t0=$(ticks "$pid"); s0=$(date +%s.%N)
    sleep "$SECS"
    t1=$(ticks "$pid"); s1=$(date +%s.%N)
    cpu_pct "$t0" "$t1" "$s0" "$s1"
}

# A stand-in for Prusa Connect for the upload case: HTTPS with a test CA, every PUT answered
# 204 as Prusa's camera API does (the tests' fake checks the requests; this one only takes them).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=farmcam-bench-CA -keyout "$DIR/ca.key" \
    -out "$DIR/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null
openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial \
    -days 2 -copy_extensions copyall -out "$DIR/server.pem" 2>/dev/null
PRUSA_PORT=18443
/usr/bin/python3 - "$DIR" $PRUSA_PORT > "$DIR/prusa.log" 2>&1 <<'PY' &
import http.server, ssl, sys
class Put(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_PUT(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()
        print(self.path, flush=True)
    def log_message(self, *a):
        pass
d, port = sys.argv[1], int(sys.argv[2])
s = http.server.ThreadingHTTPServer(("127.0.0.1", port), Put)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
c.load_cert_chain(f"{d}/server.pem", f"{d}/server.key")
s.socket = c.wrap_socket(s.socket, server_side=True)
s.serve_forever()
PY

# A broker for the MQTT case.
MQTT_PORT=18830
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' $MQTT_PORT > "$DIR/mosquitto.conf"
mosquitto -c "$DIR/mosquitto.conf" > "$DIR/mosquitto.log" 2>&1 &

# farmcam with one camera and the given idle_grace (and $MQTT, a config section, and $CAMERA,
# keys or tables of the camera); a consumer loop runs while it is measured.
farmcam_case() {
    local grace=$1 consumer=$2 pid cpid result
    cat > "$DIR/farmcam.toml" <<TOML
[http]
listen = "127.0.0.1:8095"
${MQTT:-}
[[camera]]
id = "cam"
source = "$SRC"
idle_grace = "$grace"
${CAMERA:-}
TOML
    $BIN run --config "$DIR/farmcam.toml" 2>"$DIR/farmcam.log" &
    pid=$!
    wait_until 60 "farmcam at http://127.0.0.1:8095/api/cameras" curl -sf -o /dev/null http://127.0.0.1:8095/api/cameras
    bash -c "$consumer" &
    cpid=$!
    result=$(cpu_of "$pid")
    kill "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null || true
    pkill -P "$cpid" 2>/dev/null || true
    curl -s http://127.0.0.1:8095/api/cameras > "$DIR/status.json"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$result $(python3 -c "import json;c=json.load(open('$DIR/status.json'))[0];print(c.get('decoder'), c.get('frames_decoded'), c.get('frames_encoded'), c.get('upstream_opens'))")"
}

# ffmpeg alone doing the same work on the same source.
ffmpeg_case() {
    local pid result
    ffmpeg -hide_banner -nostats -loglevel error -rtsp_transport tcp "$@" &
    pid=$!
    result=$(cpu_of "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$result"
}

URL=http://127.0.0.1:8095/cameras/cam
SNAP1="while :; do curl -s -o /dev/null $URL/snapshot; sleep 1; done"
SNAP10="while :; do curl -s -o /dev/null $URL/snapshot; sleep 10; done"
declare -A R
R[idle]=$(farmcam_case 5s "sleep 100000")
R[full]=$(farmcam_case 5s "curl -s -o /dev/null $URL/stream")
R[fps1]=$(farmcam_case 5s "curl -s -o /dev/null '$URL/stream?fps=1'")
R[snap1]=$(farmcam_case 5s "$SNAP1")
R[snap10]=$(farmcam_case 5s "$SNAP10")
R[snap10g]=$(farmcam_case 30s "$SNAP10")
R[mqtt10]=$(MQTT="[mqtt]
url = \"mqtt://127.0.0.1:$MQTT_PORT\"
snapshot_interval = \"10s\"" farmcam_case 5s "sleep 100000")
R[prusa10]=$(MQTT="[prusa_connect]
url = \"https://127.0.0.1:$PRUSA_PORT\"
ca_file = \"$DIR/ca.pem\"" CAMERA="[camera.prusa_connect]
token = \"bench-token\"
interval = \"10s\"" farmcam_case 5s "sleep 100000")
R[fps15]=$(farmcam_case 5s "curl -s -o /dev/null '$URL/stream?fps=15'")
R[fps5_15]=$(farmcam_case 5s "curl -s -o /dev/null '$URL/stream?fps=5' & sleep 2; curl -s -o /dev/null '$URL/stream?fps=15'; wait")
F_copy=$(ffmpeg_case -i "$SRC" -an -c:v copy -f h264 -y /dev/null)
F_key=$(ffmpeg_case -skip_frame nokey -i "$SRC" -an -fps_mode passthrough -f null -)
F_keyenc=$(ffmpeg_case -skip_frame nokey -i "$SRC" -an -fps_mode passthrough -c:v mjpeg -q:v 5 -f null -)
F_dec=$(ffmpeg_case -i "$SRC" -an -f null -)
F_trans=$(ffmpeg_case -i "$SRC" -an -c:v mjpeg -q:v 5 -f mjpeg -y /dev/null)

ratio() { python3 -c "a,b=$1,$2; print(f'{a/b:.2f}' if b > 0 else 'n/a')"; }
cpu() { echo "${R[$1]}" | awk '{print $1}'; }
echo
echo "H.264 1280x720 at 30 fps, keyframe every 1 s; CPU % of one core over ${SECS} s (farmcam + its ffmpeg children)"
echo "| consumer | farmcam | decoder, decoded, encoded, opens |"
echo "| --- | --- | --- |"
for k in idle full fps1 snap1 snap10 snap10g mqtt10 prusa10 fps15 fps5_15; do
    case $k in
        idle) n="nobody" ;; full) n="one full-rate viewer" ;; fps1) n="one ?fps=1 viewer" ;;
        snap1) n="a snapshot every 1 s (wall tile)" ;; snap10) n="an HTTP snapshot every 10 s (idle_grace 5 s)" ;;
        snap10g) n="an HTTP snapshot every 10 s (idle_grace 30 s)" ;;
        mqtt10) n="MQTT snapshots every 10 s (default idle_grace 5 s)" ;;
        prusa10) n="Prusa Connect uploads every 10 s (HTTPS, default idle_grace 5 s)" ;;
        fps15) n="one ?fps=15 viewer" ;; fps5_15) n="a ?fps=5 and a ?fps=15 viewer" ;;
    esac
    set -- ${R[$k]}
    echo "| $n | $1 % | $2, $3, $4, $5 |"
done
echo "(the Prusa Connect stand-in took $(grep -c /c/snapshot "$DIR/prusa.log" || true) snapshots and $(grep -c /c/info "$DIR/prusa.log" || true) camera info calls)"
echo
echo "| ffmpeg alone | CPU |"
echo "| --- | --- |"
echo "| stream copy | $F_copy % |"
echo "| keyframe-only decode | $F_key % |"
echo "| keyframe decode + JPEG encode | $F_keyenc % |"
echo "| full decode | $F_dec % |"
echo "| full transcode to MJPEG | $F_trans % |"
echo
echo "| target | ratio |"
echo "| --- | --- |"
echo "| 1 s snapshots / keyframe decode + encode (≤ 1.5) | $(ratio "$(cpu snap1)" "$F_keyenc") |"
echo "| 10 s snapshots / keyframe-only decode (≤ 1.5), idle_grace 5 s | $(ratio "$(cpu snap10)" "$F_key") |"
echo "| 10 s snapshots / keyframe-only decode (≤ 1.5), idle_grace 30 s | $(ratio "$(cpu snap10g)" "$F_key") |"
echo "| MQTT every 10 s, default configuration / keyframe-only decode (≤ 1.5) | $(ratio "$(cpu mqtt10)" "$F_key") |"
echo "| Prusa Connect every 10 s, default configuration / keyframe-only decode (≤ 1.5) | $(ratio "$(cpu prusa10)" "$F_key") |"
echo "| ?fps=5 + ?fps=15 / one ?fps=15 (≤ 1.1) | $(ratio "$(cpu fps5_15)" "$(cpu fps15)") |"
echo "| full-rate viewer / full transcode (≤ 1.05) | $(ratio "$(cpu full)" "$F_trans") |"
echo "| idle (0) | $(cpu idle) % |"
