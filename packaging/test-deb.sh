#!/bin/sh
# Check the amd64 .deb: lintian (no errors), then install it with dpkg into a fresh Debian 12
# chroot (debootstrap, cached in target/chroot-base) and check the user, the files and their
# permissions, and that `farmcam check` passes on the shipped configuration. With "arm64" and/or
# "armhf", also cross-build those packages and run their binaries under qemu (see `cross`).
#
#   packaging/test-deb.sh [arm64] [armhf]
set -eu
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
for p in lintian debootstrap; do
    command -v "$p" >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "$p"
done

# The Cargo profile the packages are built with (packaging/build-debs.sh), and its directory.
PROFILE="${FARMCAM_DEB_PROFILE:-release}"
PROFILE_DIR=$PROFILE
if [ "$PROFILE" = dev ]; then PROFILE_DIR=debug; fi

packaging/build-debs.sh amd64
DEB=$(ls -t target/debian/farmcam_*_amd64.deb | head -1)
echo "test-deb: lintian $DEB" >&2
lintian --fail-on error "$DEB"
# libjpeg-turbo is linked in: the package must not depend on a system libjpeg.
if dpkg-deb -f "$DEB" Depends | grep -qi 'jpeg'; then
    echo "test-deb: FAILED: $DEB depends on $(dpkg-deb -f "$DEB" Depends)" >&2
    exit 1
fi

BASE=target/chroot-base
if [ ! -x "$BASE/usr/bin/systemd-sysusers" ]; then
    echo "test-deb: debootstrap (once)" >&2
    rm -rf "$BASE"
    $SUDO debootstrap --variant=minbase --include=systemd,init-system-helpers bookworm "$BASE" http://deb.debian.org/debian >/dev/null
fi
ROOT=target/chroot
rm -rf "$ROOT"
cp -a "$BASE" "$ROOT"
cp "$DEB" "$ROOT/tmp/farmcam.deb"
# ffmpeg is a dependency for network cameras; not needed to check the installation itself.
$SUDO chroot "$ROOT" dpkg -i --force-depends /tmp/farmcam.deb
fail() { echo "test-deb: FAILED: $*" >&2; exit 1; }
$SUDO chroot "$ROOT" getent passwd farmcam >/dev/null || fail "no farmcam user"
$SUDO chroot "$ROOT" id -nG farmcam | grep -qw video || fail "farmcam not in group video"
$SUDO chroot "$ROOT" id -nG farmcam | grep -qw dialout || fail "farmcam not in group dialout"
$SUDO chroot "$ROOT" id -nG farmcam | grep -qw render || fail "farmcam not in group render (h264_vaapi)"
for f in /usr/bin/farmcam /usr/lib/systemd/system/farmcam.service /usr/lib/sysusers.d/farmcam.conf \
         /etc/farmcam/farmcam.toml /usr/share/doc/farmcam/README.md; do
    [ -e "$ROOT$f" ] || fail "missing $f"
done
perms=$($SUDO chroot "$ROOT" stat -c '%a %U:%G' /etc/farmcam/farmcam.toml)
[ "$perms" = "640 root:farmcam" ] || fail "/etc/farmcam/farmcam.toml is $perms, not 640 root:farmcam"
$SUDO chroot "$ROOT" grep -q '/etc/farmcam/farmcam.toml' /var/lib/dpkg/info/farmcam.conffiles || fail "config is not a conffile"
perms=$($SUDO chroot "$ROOT" stat -c '%a %U:%G' /var/lib/farmcam/timelapses)
[ "$perms" = "750 farmcam:farmcam" ] || fail "/var/lib/farmcam/timelapses is $perms, not 750 farmcam:farmcam"
$SUDO chroot "$ROOT" farmcam check --config /etc/farmcam/farmcam.toml || fail "farmcam check on the shipped config"
echo "test-deb: amd64 package OK (lintian, install, user, files, timelapse directory, check)" >&2

# Cross builds (arm64, armhf): build the .deb, then run the binary under qemu user emulation:
# --version, `check` on the shipped configuration, and a turned, scaled snapshot of a test
# camera (libjpeg-turbo's SIMD code for that architecture at work).
cross() {
    arch=$1 qemu=$2 triple=$3 target=$4
    command -v "$qemu" >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends qemu-user-static
    packaging/build-debs.sh "$arch"
    BIN=target/$target/$PROFILE_DIR/farmcam
    "$qemu" -L "/usr/$triple" "$BIN" --version
    "$qemu" -L "/usr/$triple" "$BIN" check --config packaging/farmcam.toml
    dir=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    printf '[http]\nlisten = "127.0.0.1:%s"\n[[camera]]\nid = "a"\nsource = "test:"\nsize = "1280x720"\nrotate = 90\n' "$port" >"$dir/f.toml"
    "$qemu" -L "/usr/$triple" "$BIN" run --config "$dir/f.toml" 2>"$dir/log" &
    pid=$!
    ok=""
    for _ in $(seq 120); do
        if curl -sf -o "$dir/a.jpg" "http://127.0.0.1:$port/cameras/a/snapshot?width=320"; then ok=1; break; fi
        sleep 0.5
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
    [ -n "$ok" ] || { cat "$dir/log" >&2; fail "$arch: no snapshot"; }
    size=$(python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); i=d.find(b"\xff\xc0"); print(int.from_bytes(d[i+7:i+9],"big"), int.from_bytes(d[i+5:i+7],"big"))' "$dir/a.jpg")
    [ "$size" = "320 569" ] || fail "$arch: a 720p camera turned 90 degrees, 320 wide, should be 320x569, is $size"
    rm -rf "$dir"
    echo "test-deb: $arch binary runs under qemu (check, turned and scaled snapshot)" >&2
}
for arch in "$@"; do
    case "$arch" in
        arm64) cross arm64 qemu-aarch64-static aarch64-linux-gnu aarch64-unknown-linux-gnu ;;
        armhf) cross armhf qemu-arm-static arm-linux-gnueabihf armv7-unknown-linux-gnueabihf ;;
        *) fail "unknown architecture $arch (arm64, armhf)" ;;
    esac
done
