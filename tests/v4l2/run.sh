#!/bin/sh
# The V4L2 tests (tests/v4l2.rs) on real V4L2 drivers: builds farmcam and the test binary with
# the dev profile (the build the rest of the suite uses: no second, release, build), then runs
# the tests one at a time inside the qemu guest (tests/v4l2/guest.sh). Extra arguments go to the
# test binary (e.g. a test name to filter on).
set -eu
cd "$(dirname "$0")/../.."
# Building the test builds farmcam with it, with the features the suite's build has (a plain
# `cargo build` resolves dependencies' features without the dev-dependencies and would build a
# second farmcam over the first, and the suite's next run a third).
test_bin="$(cargo test --test v4l2 --no-run --message-format=json 2>/dev/null \
    | grep "\"name\":\"v4l2\"" | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
[ -x "$test_bin" ] || { echo "run.sh: could not build the v4l2 test binary" >&2; exit 2; }
export FARMCAM_BIN="$PWD/target/debug/farmcam"
exec tests/v4l2/guest.sh "$test_bin" --test-threads=1 --nocapture "$@"
