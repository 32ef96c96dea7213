#!/bin/sh
# Check the amd64 .deb: lintian (no errors), then install it with dpkg into a fresh Debian 12
# chroot (debootstrap, cached in target/chroot-base) and check the user, the files and their
# permissions, and that `farmcam check` passes on the shipped configuration. With "arm64", also
# run the arm64 binary under qemu-aarch64-static (--version and check).
#
#   packaging/test-deb.sh [arm64]
set -eu
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
for p in lintian debootstrap; do
    command -v "$p" >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "$p"
done

packaging/build-debs.sh amd64
DEB=$(ls -t target/debian/farmcam_*_amd64.deb | head -1)
echo "test-deb: lintian $DEB" >&2
lintian --fail-on error "$DEB"

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
for f in /usr/bin/farmcam /usr/lib/systemd/system/farmcam.service /usr/lib/sysusers.d/farmcam.conf \
         /etc/farmcam/farmcam.toml /usr/share/doc/farmcam/README.md; do
    [ -e "$ROOT$f" ] || fail "missing $f"
done
perms=$($SUDO chroot "$ROOT" stat -c '%a %U:%G' /etc/farmcam/farmcam.toml)
[ "$perms" = "640 root:farmcam" ] || fail "/etc/farmcam/farmcam.toml is $perms, not 640 root:farmcam"
$SUDO chroot "$ROOT" grep -q '/etc/farmcam/farmcam.toml' /var/lib/dpkg/info/farmcam.conffiles || fail "config is not a conffile"
$SUDO chroot "$ROOT" farmcam check --config /etc/farmcam/farmcam.toml || fail "farmcam check on the shipped config"
echo "test-deb: amd64 package OK (lintian, install, user, files, check)" >&2

if [ "${1:-}" = "arm64" ]; then
    command -v qemu-aarch64-static >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends qemu-user-static
    packaging/build-debs.sh arm64
    BIN=target/aarch64-unknown-linux-gnu/release/farmcam
    qemu-aarch64-static -L /usr/aarch64-linux-gnu "$BIN" --version
    qemu-aarch64-static -L /usr/aarch64-linux-gnu "$BIN" check --config packaging/farmcam.toml
    echo "test-deb: arm64 binary runs under qemu" >&2
fi
