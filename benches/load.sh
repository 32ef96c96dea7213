#!/bin/bash
# farmcam alone under `farmcam bench`: the demo camera (test pattern 1280x720 at 30 fps) with N
# viewers for D seconds. Prints farmcam's CPU (share of one core, from /proc), its RSS, and the
# bench report's fps/interval/latency. Run by hand (release build): benches/load.sh 100 10
set -eu
cd "$(dirname "$0")/.."
VIEWERS=${1:-10}
SECS=${2:-10}
BIN=target/release/farmcam
$BIN run --config config/farmcam.toml 2>/dev/null &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
sleep 1
cpu() { awk '{print $14+$15}' "/proc/$PID/stat"; }
c0=$(cpu); t0=$(date +%s.%N)
REPORT=$($BIN bench http://127.0.0.1:8080/cameras/demo/stream --viewers "$VIEWERS" --duration "${SECS}s" --json 2>/dev/null)
c1=$(cpu); t1=$(date +%s.%N)
RSS=$(awk '/VmRSS/{print $2}' "/proc/$PID/status")
echo "$REPORT" | python3 -c "
import json,sys
r=json.load(sys.stdin)
cpu=($c1-$c0)/100/($t1-$t0)*100
frames=r['frames']
print(f\"viewers={r['viewers']} farmcam_cpu={cpu:.1f}% rss={$RSS/1024:.1f}MB fps_min={r['fps_min']} fps_median={r['fps_median']} \"
      f\"interval_p99={r['interval_ms']['p99']}ms latency_p50={r['latency_ms']['p50']}ms latency_p99={r['latency_ms']['p99']}ms \"
      f\"cpu_us_per_frame={cpu/100*($t1-$t0)*1e6/max(frames,1):.1f} invalid={r['invalid_frames']} errors={r['errors']}\")
"
