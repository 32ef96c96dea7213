#!/bin/sh
# Build farmcam .deb packages: amd64, arm64 and armhf (Raspberry Pi OS 32-bit; ARMv7, i.e. Pi 2
# and later: Pi Zero/1 are ARMv6, which Debian's armhf cross compiler does not target).
#
#   packaging/build-debs.sh                 all three, into target/*/debian/
#   packaging/build-debs.sh amd64 arm64     some
#
# FARMCAM_DEB_PROFILE picks the Cargo profile (default release, what is shipped). CI's checks
# (packaging/test-deb.sh from .ci/run) use `dev`: the amd64 package then reuses the test suite's
# build, and the cross builds skip what only a release needs (optimisation, LTO).
#
# Installs what it needs (idempotently): cargo-deb, the Rust targets, Debian's cross compilers.
set -eu
cd "$(dirname "$0")/.."
ARCHS="${*:-amd64 arm64 armhf}"
PROFILE="${FARMCAM_DEB_PROFILE:-release}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_apt() {
    missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
    fi
}

command -v cargo-deb >/dev/null 2>&1 || cargo install --locked cargo-deb

# A cross build: Rust target, GNU triple (compiler prefix and sysroot), Debian cross packages.
cross_deb() {
    target=$1 triple=$2
    shift 2
    need_apt "gcc-$triple" "$@" libclang-dev cmake
    rustup target add "$target"
    t=$(echo "$target" | tr - _)
    T=$(echo "$t" | tr '[:lower:]' '[:upper:]')
    # bindgen (the v4l crate's V4L2 bindings) reads the target's kernel headers from the sysroot.
    env "BINDGEN_EXTRA_CLANG_ARGS_$t=--sysroot=/usr/$triple" \
        "CARGO_TARGET_${T}_LINKER=$triple-gcc" \
        "CC_$t=$triple-gcc" \
        cargo deb --profile "$PROFILE" --target "$target"
}

for arch in $ARCHS; do
    case "$arch" in
        amd64)
            need_apt libclang-dev cmake nasm
            cargo deb --profile "$PROFILE"
            ;;
        arm64) cross_deb aarch64-unknown-linux-gnu aarch64-linux-gnu libc6-dev-arm64-cross ;;
        armhf) cross_deb armv7-unknown-linux-gnueabihf arm-linux-gnueabihf libc6-dev-armhf-cross ;;
        *)
            echo "build-debs.sh: unknown architecture $arch (amd64, arm64, armhf)" >&2
            exit 2
            ;;
    esac
done
find target -name 'farmcam_*.deb' -newer Cargo.toml -print
