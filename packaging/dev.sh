#!/bin/sh
# farmcam developer entry point. Installs what it needs (idempotently), then acts:
#
#   packaging/dev.sh demo   build and run the daemon on config/farmcam.toml (http://127.0.0.1:8080/)
#   packaging/dev.sh test   run the whole test suite (cargo nextest, and next to it the V4L2
#                           tests in a qemu guest: tests/v4l2/run.sh)
#   packaging/dev.sh deps   only install build and test dependencies
#
# Works on a fresh Debian 12 (as root, or with sudo). Rust comes from rustup when cargo is missing.
set -eu
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Debian packages: build tools (libclang-dev: the v4l crate generates its V4L2 bindings; cmake
# and nasm: libjpeg-turbo is built from source with its SIMD code).
APT_PACKAGES="build-essential pkg-config ca-certificates curl libclang-dev cmake nasm"
# Test peers: ffmpeg (rtsp/http sources), GStreamer's RTSP server run by /usr/bin/python3 (RTSP
# and RTSPS H.264 test cameras), mosquitto (MQTT broker), openssl (test certificates), Chromium
# with chromedriver (the wall test), systemd (systemd-analyze checks the unit). The V4L2 tests run
# in a qemu guest under Debian's kernel (vivid, and v4l2loopback built by dkms against its
# headers), with busybox as the guest's init and v4l-utils as "another program" using a camera.
# A real Moonraker (tests/peers/moonraker: a venv from PyPI, python3-venv and libsodium23)
# for the webcam-registration tests; aiortc (tests/peers/aiortc: a venv from PyPI), a WebRTC
# viewer that is not a browser; nginx (as MainsailOS runs it) in front of farmcam. GStreamer's
# gst-launch-1.0 with rtspsrc and its libav decoder: an RTSP client of farmcam's RTSP out; the
# bad plugins' x265enc for an H.265 test camera.
TEST_APT_PACKAGES="ffmpeg mosquitto openssl python3 python3-gi python3-gst-1.0 gir1.2-gstreamer-1.0
    gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
    gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad gstreamer1.0-tools gstreamer1.0-libav glib-networking chromium chromium-driver systemd
    python3-venv libsodium23 nginx-light
    qemu-system-x86 linux-image-amd64 linux-headers-amd64 v4l2loopback-dkms busybox-static v4l-utils"

install_apt() {
    missing=""
    for p in $APT_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "dev.sh: installing Debian packages:$missing" >&2
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
    fi
}

install_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "dev.sh: installing Rust with rustup" >&2
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
        . "$HOME/.cargo/env"
    fi
}

install_peers() {
    bash tests/peers/moonraker/run.sh --install >/dev/null
    bash tests/peers/aiortc/run.sh --install >/dev/null
}

install_test_tools() {
    if command -v rustup >/dev/null 2>&1; then
        cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
        cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
    fi
    command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
}

case "${1:-}" in
    demo)
        install_apt
        install_rust
        cargo build --release
        echo "dev.sh: open http://127.0.0.1:8080/ (Ctrl-C stops)" >&2
        exec target/release/farmcam run --config config/farmcam.toml
        ;;
    test)
        APT_PACKAGES="$APT_PACKAGES $TEST_APT_PACKAGES"
        install_apt
        install_rust
        install_test_tools
        install_peers
        # One build for both. The V4L2 guest (tests/v4l2/run.sh: an emulated machine, about a
        # core, and the long pole) runs next to the rest of the suite, which leaves about a core
        # idle waiting on its peers; it starts once its own test binary and farmcam are built,
        # while the suite's other test binaries build. Its console goes to a file, shown when it
        # ends. In a session of its own, so an interrupted run takes the guest with it.
        cargo test --test v4l2 --no-run
        guest_log="$(mktemp)"
        setsid tests/v4l2/run.sh >"$guest_log" 2>&1 &
        guest=$!
        trap 'kill -TERM "-$guest" 2>/dev/null || true; rm -f "$guest_log"' EXIT
        trap 'exit 130' INT TERM
        cargo nextest run --workspace --no-run
        status=0
        cargo nextest run --workspace --no-fail-fast -E 'not binary_id(farmcam::v4l2)' || status=$?
        echo "dev.sh: the V4L2 tests (qemu guest, tests/v4l2/run.sh):" >&2
        guest_status=0
        wait "$guest" || guest_status=$?
        cat "$guest_log"
        [ "$guest_status" -eq 0 ] || status=$guest_status
        exit "$status"
        ;;
    deps)
        APT_PACKAGES="$APT_PACKAGES $TEST_APT_PACKAGES"
        install_apt
        install_rust
        install_test_tools
        install_peers
        ;;
    *)
        echo "usage: packaging/dev.sh demo|test|deps" >&2
        exit 2
        ;;
esac
