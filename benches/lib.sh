# Shared by the bench scripts (sourced): CPU and memory of a daemon from /proc.

# CPU time of process $1 in clock ticks (1/100 s, with a fraction): all its threads, exited ones
# too, from its CPU-time clock (nanoseconds: the tick counters of /proc/PID/stat are counted in
# whole 10 ms steps, ±7 % of a 20 s window of a process using 0.7 % of a core); its live
# children's the same way (farmcam's decoder helper and ffmpeg children); and its reaped
# children's, from /proc/PID/stat.
ticks() {
    python3 - "$1" <<'PY'
import glob, sys, time
pid = int(sys.argv[1])

def clock(p):
    # Linux's CPU-time clock of another process: clockid (~pid << 3) | 2 (CPUCLOCK_SCHED).
    try:
        return time.clock_gettime((~p << 3) | 2)
    except OSError:
        return 0.0

with open(f"/proc/{pid}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
reaped = (int(fields[13]) + int(fields[14])) / 100
children = set()
for path in glob.glob(f"/proc/{pid}/task/*/children"):
    try:
        children.update(int(c) for c in open(path).read().split())
    except OSError:
        pass
# A child may exit (or be a zombie) between listing and reading: it then counts 0.
total = clock(pid) + reaped + sum(clock(c) for c in children)
print(f"{total * 100:.4f}")
PY
}

# Resident memory (kB) of process $1 and its live children.
rss_kb() {
    local pid=$1 r c v
    r=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
    for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        v=$(awk '/VmRSS/{print $2}' "/proc/$c/status" 2>/dev/null)
        r=$((r + ${v:-0}))
    done
    echo "$r"
}

# CPU share of one core (%) from two tick counts and two `date +%s.%N` times.
cpu_pct() { python3 -c "print(f'{($2-$1)/100/($4-$3)*100:.2f}')" "$@"; }

# The floor of the coded-video benchmarks: CPU share of `ffmpeg -c:v copy` pulling $SRC (TCP)
# over $SECS seconds after a 5 s warm-up, what the camera connection alone costs.
ffmpeg_copy() {
    local pid t0 s0 t1 s1
    ffmpeg -hide_banner -nostats -loglevel error -rtsp_transport tcp -i "$SRC" -an -c:v copy -f h264 -y /dev/null </dev/null &
    pid=$!
    sleep 5
    t0=$(ticks "$pid"); s0=$(date +%s.%N)
    sleep "$SECS"
    t1=$(ticks "$pid"); s1=$(date +%s.%N)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    cpu_pct "$t0" "$t1" "$s0" "$s1"
}

# Proportional memory (kB: shared pages split between the processes using them) of process $1
# and its live children, and how many processes that is.
pss_kb() {
    local pid=$1 p c v n=1
    p=$(awk '/^Pss:/{print $2}' "/proc/$pid/smaps_rollup")
    for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        v=$(awk '/^Pss:/{print $2}' "/proc/$c/smaps_rollup" 2>/dev/null)
        p=$((p + ${v:-0}))
        n=$((n + 1))
    done
    echo "$p $n"
}

# Run the command until it succeeds, for at most SECONDS; then fail the bench with what it waited for.
#   wait_until SECONDS WHAT COMMAND...
wait_until() {
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "bench: gave up waiting for $what" >&2
            exit 1
        fi
        sleep 0.1
    done
}

# The set-up of the benchmarks with aiortc viewers: the release farmcam in $BIN, aiortc in
# $AIORTC (its venv made), a scratch $DIR, and on exit every background job killed and $DIR gone.
aiortc_bench_setup() {
    BIN=target/release/farmcam
    AIORTC="bash tests/peers/aiortc/run.sh"
    cargo build --release --bin farmcam
    $AIORTC --install >/dev/null
    DIR=$(mktemp -d)
    trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DIR"' EXIT
}

# The mean of the numbers given, to 2 decimals.
mean() { python3 -c "import sys; v=[float(x) for x in sys.argv[1:]]; print(f'{sum(v)/len(v):.2f}')" "$@"; }

# GStreamer's RTSP test camera (H.264 1280x720, 30 fps, a keyframe every second), in the
# background; its URL in $SRC. Needs $DIR.
rtsp_test_camera() {
    /usr/bin/python3 tests/peers/rtsp_server.py --size 1280x720 --fps 30 --keyint 30 > "$DIR/rtsp" &
    wait_until 60 "the RTSP test server" grep -q ready "$DIR/rtsp"
    SRC="rtsp://127.0.0.1:$(awk '/ready/{print $2}' "$DIR/rtsp")/cam"
}
