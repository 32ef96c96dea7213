#!/bin/bash
# farmcam alone, with test-pattern cameras (no hardware) and `farmcam bench` as the load, on
# this machine (the load generator shares its cores). Run by hand, not in CI; prints Markdown
# tables for BENCHMARKS.md:
#   benches/alone.sh [SECONDS] [RUNS] [PARTS...]   (default 10 s, 3 runs, all parts; ~6 minutes)
# PARTS: idle viewers cameras stalled
# 1. idle: the demo config, no viewers, no MQTT: pumps running, CPU per 10 s (from schedstat, ns);
# 2. one 1280x720@30 camera with 1/10/100/200 viewers: CPU, CPU per delivered frame, latency
#    (capture to receive, from X-Timestamp), fps per viewer, RSS; medians of RUNS runs;
# 3. 8 cameras (1280x720@30) with 200 viewers (25 each): RSS and CPU;
# 4. 1000 stalled viewers (4 KiB read every 2 s) plus 10 fast ones for 60 s: RSS over time and
#    the fast viewers' fps.
set -eu
cd "$(dirname "$0")/.."
SECS=${1:-10}
RUNS=${2:-3}
shift 2 || true
PARTS=${*:-idle viewers cameras stalled}
part() { [[ " $PARTS " == *" $1 "* ]]; }
BIN=$PWD/target/release/farmcam
cargo build --release --bin farmcam
# 1000+ sockets in the load generator (farmcam raises its own limit to fit max_connections).
ulimit -n 8192
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DIR"' EXIT

# farmcam with N test-pattern cameras cam1..camN (1280x720@30); sets PID.
start() {
    local n=$1 i
    printf '[http]\nlisten = "127.0.0.1:8090"\nmax_connections = 2000\nmax_connections_per_client = 2000\n' >"$DIR/f.toml"
    for i in $(seq "$n"); do
        printf '[[camera]]\nid = "cam%s"\nsource = "test:"\nsize = "1280x720"\nfps = 30\nidle_grace = "5m"\n' "$i" >>"$DIR/f.toml"
    done
    "$BIN" run --config "$DIR/f.toml" 2>/dev/null &
    PID=$!
    wait_until 60 "farmcam at http://127.0.0.1:8090/api/cameras" curl -sf http://127.0.0.1:8090/api/cameras
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; }
. benches/lib.sh
rss_mb() { rss_kb "$PID" | awk '{printf "%.1f", $1/1024}'; }

if part idle; then
echo "## idle"
"$BIN" run --config config/farmcam.toml 2>/dev/null &
PID=$!
wait_until 60 "farmcam at http://127.0.0.1:8080/api/cameras" curl -sf http://127.0.0.1:8080/api/cameras
sleep 2
ns() { cat /proc/"$PID"/task/*/schedstat | awk '{s+=$1} END {print s}'; }
n0=$(ns)
sleep 30
n1=$(ns)
pumps=$(curl -s http://127.0.0.1:8080/api/cameras | python3 -c \
    "import json,sys; print(sum(c['state'] not in ('idle', 'stopped') for c in json.load(sys.stdin)))")
echo "| cameras | pumps running | CPU per 10 s | RSS |"
echo "| --- | --- | --- | --- |"
echo "| 2 (demo config) | $pumps | $(python3 -c "print(f'{($n1-$n0)/3/1e6:.2f} ms')") | $(rss_mb) MB |"
stop
fi

if part viewers; then
echo "## viewers on one camera"
start 1
"$BIN" bench http://127.0.0.1:8090/cameras/cam1/stream --viewers 1 --duration 2s >/dev/null 2>&1
for n in 1 10 100 200; do
    for _ in $(seq "$RUNS"); do
        c0=$(ticks "$PID"); t0=$(date +%s.%N)
        r=$("$BIN" bench http://127.0.0.1:8090/cameras/cam1/stream --viewers "$n" --duration "${SECS}s" --json 2>/dev/null)
        c1=$(ticks "$PID"); t1=$(date +%s.%N)
        echo "$r" | python3 -c "
import json,sys
r=json.load(sys.stdin); cpu=($c1-$c0)/100/($t1-$t0)
print(json.dumps({'cpu': cpu*100, 'us_per_frame': cpu*($t1-$t0)*1e6/max(r['frames'],1), 'rss': $(rss_mb),
  'fps_min': r['fps_min'], 'fps_median': r['fps_median'], 'p50': r['latency_ms']['p50'],
  'p95': r['latency_ms']['p95'], 'p99': r['latency_ms']['p99'], 'interval_p99': r['interval_ms']['p99'],
  'invalid': r['invalid_frames'], 'errors': r['errors']}))" >>"$DIR/v$n"
    done
done
stop
python3 - "$DIR" "$(nproc)" <<'EOF'
import json, statistics, sys
d, cpus = sys.argv[1], sys.argv[2]
print("| viewers | farmcam CPU | CPU per delivered frame | fps per viewer min / median | interval p99 | latency p50 / p95 / p99 | RSS | invalid / errors |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for n in (1, 10, 100, 200):
    rows = [json.loads(l) for l in open(f"{d}/v{n}")]
    m = lambda k: statistics.median(r[k] for r in rows)
    print(f"| {n} | {m('cpu'):.1f} % | {m('us_per_frame'):.0f} µs | {m('fps_min'):.1f} / {m('fps_median'):.1f} | "
          f"{m('interval_p99'):.0f} ms | {m('p50'):.2f} / {m('p95'):.2f} / {m('p99'):.2f} ms | {m('rss'):.1f} MB | "
          f"{sum(r['invalid'] for r in rows)} / {sum(r['errors'] for r in rows)} |")
print(f"| ({cpus} cores, medians of {len(rows)} runs) | | | | | | | |")
EOF
fi

if part cameras; then
echo "## 8 cameras, 200 viewers"
start 8
for i in $(seq 8); do
    "$BIN" bench "http://127.0.0.1:8090/cameras/cam$i/stream" --viewers 25 --duration "$((SECS + 5))s" --json >"$DIR/m$i" 2>/dev/null &
done
sleep 5
c0=$(ticks "$PID"); t0=$(date +%s.%N)
sleep "$SECS"
c1=$(ticks "$PID"); t1=$(date +%s.%N)
rss=$(rss_mb)
wait $(jobs -p | grep -v "^$PID$") 2>/dev/null || true
fps=$(python3 -c "
import glob,json
rs=[json.load(open(f)) for f in sorted(glob.glob('$DIR/m*'))]
print(f\"{min(r['fps_min'] for r in rs):.1f} / {sorted(r['fps_median'] for r in rs)[len(rs)//2]:.1f}\")")
echo "| cameras | viewers | farmcam CPU | RSS | fps per viewer min / median |"
echo "| --- | --- | --- | --- | --- |"
echo "| 8 × 1280x720@30 | 200 | $(cpu_pct "$c0" "$c1" "$t0" "$t1") % | $rss MB | $fps |"
stop
fi

if part stalled; then
echo "## 1000 stalled viewers and 10 fast ones"
start 1
"$BIN" bench http://127.0.0.1:8090/cameras/cam1/stream --viewers 10 --slow 1000 --duration 60s --json >"$DIR/slow" 2>/dev/null &
BENCH=$!
echo "| seconds | 0 | 10 | 20 | 30 | 40 | 50 | 60 |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
line="| farmcam RSS (MB) |"
for _ in 0 1 2 3 4 5 6; do
    line="$line $(rss_mb) |"
    sleep 10
done
echo "$line"
wait $BENCH || true
python3 -c "
import json
r=json.load(open('$DIR/slow'))
print(f\"fast viewers: fps min {r['fps_min']} / median {r['fps_median']}, latency p99 {r['latency_ms']['p99']} ms, errors {r['errors']}; slow viewers {r.get('slow_viewers')}\")"
stop
fi
