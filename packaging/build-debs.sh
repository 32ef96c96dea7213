#!/bin/sh
# Build farmcam .deb packages: amd64, arm64 and armhf (Raspberry Pi OS 32-bit; ARMv7, i.e. Pi 2
# and later: Pi Zero/1 are ARMv6, which Debian's armhf cross compiler does not target).
#
#   packaging/build-debs.sh                 all three, into target/*/debian/
#   packaging/build-debs.sh amd64 arm64     some
#
# Installs what it needs (idempotently): cargo-deb, the Rust targets, Debian's cross compilers.
set -eu
cd "$(dirname "$0")/.."
ARCHS="${*:-amd64 arm64 armhf}"
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

for arch in $ARCHS; do
    case "$arch" in
        amd64)
            need_apt libclang-dev
            cargo deb
            ;;
        arm64)
            need_apt gcc-aarch64-linux-gnu libc6-dev-arm64-cross libclang-dev
            rustup target add aarch64-unknown-linux-gnu
            BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=/usr/aarch64-linux-gnu" \
            CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
            CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
                cargo deb --target aarch64-unknown-linux-gnu
            ;;
        armhf)
            need_apt gcc-arm-linux-gnueabihf libc6-dev-armhf-cross libclang-dev
            rustup target add armv7-unknown-linux-gnueabihf
            BINDGEN_EXTRA_CLANG_ARGS_armv7_unknown_linux_gnueabihf="--sysroot=/usr/arm-linux-gnueabihf" \
            CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
            CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc \
                cargo deb --target armv7-unknown-linux-gnueabihf
            ;;
        *)
            echo "build-debs.sh: unknown architecture $arch (amd64, arm64, armhf)" >&2
            exit 2
            ;;
    esac
done
find target -name 'farmcam_*.deb' -newer Cargo.toml -print
