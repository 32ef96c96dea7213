#!/bin/bash
# The farm wall in headless Chromium: N test cameras at 1280x720, the wall open for SECONDS,
# once with tiles fetching full frames (`/?full=1`, what the wall did before tiles asked for
# their size) and once with tiles asking for their shown width. Per run: bytes per second farmcam
# sent (farmcam_bytes_sent_total), farmcam's CPU (share of one core, /proc), frames scaled.
# Run by hand, not in CI:  benches/wall.sh [CAMERAS] [SECONDS]
set -eu
cd "$(dirname "$0")/.."
N=${1:-24}
SECS=${2:-30}
. benches/lib.sh
cargo build --release --bin farmcam >&2
BIN=$PWD/target/release/farmcam
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DIR"' EXIT
PORT=18473
{
    echo "[http]"
    echo "listen = \"127.0.0.1:$PORT\""
    for i in $(seq 1 "$N"); do
        printf '[[camera]]\nid = "p%d"\nsource = "test:"\nsize = "1280x720"\nfps = 30\n' "$i"
    done
} >"$DIR/farmcam.toml"

metric() { # sum of a per-camera counter
    curl -s "http://127.0.0.1:$PORT/metrics" | awk -v m="farmcam_$1" '$1 ~ "^"m"[{]" {s += $2} END {printf "%d", s}'
}

run() { # $1: wall query ("?full=1" or "")
    "$BIN" run --config "$DIR/farmcam.toml" 2>"$DIR/log" &
    local pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/api/cameras" >/dev/null && break; sleep 0.1; done
    chromium --headless=new --no-sandbox --disable-gpu --window-size=1920,1080 \
        --user-data-dir="$DIR/chrome" --remote-debugging-port=0 \
        "http://127.0.0.1:$PORT/$1" >/dev/null 2>&1 &
    local chrome=$!
    sleep 5 # the page loads and every camera starts
    local b0 t0 s0 c0 b1 t1 s1 c1
    b0=$(metric bytes_sent_total) s0=$(metric frames_scaled_total) c0=$(ticks "$pid") t0=$(date +%s.%N)
    sleep "$SECS"
    b1=$(metric bytes_sent_total) s1=$(metric frames_scaled_total) c1=$(ticks "$pid") t1=$(date +%s.%N)
    kill "$chrome"; wait "$chrome" 2>/dev/null || true
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$DIR/chrome"
    python3 - "$b0" "$b1" "$t0" "$t1" "$s0" "$s1" "$c0" "$c1" "$1" <<'EOF'
import sys
b0, b1, t0, t1, s0, s1, c0, c1 = map(float, sys.argv[1:9])
secs = t1 - t0
mode = "full frames (?full=1)" if sys.argv[9] else "tiles ask for their width"
print(f"| {mode} | {(b1 - b0) / secs / 1e6:.2f} MB/s | {(c1 - c0) / 100 / secs * 100:.1f} % | {(s1 - s0) / secs:.1f} |")
EOF
}

echo "| wall of $N 720p test cameras, ${SECS} s | sent | farmcam CPU | frames scaled/s |"
echo "| --- | --- | --- | --- |"
run "?full=1"
run ""
