#!/bin/bash
# Quick figures for the demo camera (test pattern 1280x720 at 30 fps): CPU share of one core and RSS
# of farmcam with N curl viewers, measured from /proc over a window. Run by hand, not in CI.
#   cargo build --release && benches/measure.sh 50 10
set -eu
cd "$(dirname "$0")/.."
VIEWERS=${1:-1}
SECONDS_=${2:-10}
BIN=target/release/farmcam
$BIN run --config config/farmcam.toml 2>/dev/null &
PID=$!
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
sleep 1
cpu() { awk '{print $14+$15}' "/proc/$PID/stat"; }
rss() { awk '/VmRSS/{print $2}' "/proc/$PID/status"; }
for _ in $(seq 1 "$VIEWERS"); do curl -s -N -o /dev/null http://127.0.0.1:8080/cameras/demo/stream & done
sleep 3
c0=$(cpu); t0=$(date +%s.%N)
sleep "$SECONDS_"
c1=$(cpu); t1=$(date +%s.%N)
status=$(curl -s http://127.0.0.1:8080/api/cameras | python3 -c \
  "import json,sys; c=json.load(sys.stdin)[0]; print(f\"measured_fps={c['measured_fps']} delivered={c['frames_delivered']} skipped={c['frames_skipped']}\")")
echo "viewers=$VIEWERS cpu=$(python3 -c "print(f'{($c1-$c0)/100/($t1-$t0)*100:.1f}')")% rss=$(rss)kB $status"
