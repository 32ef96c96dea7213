#!/bin/sh
# Runs a command inside a throwaway qemu guest that has real V4L2 devices, and exits with its status.
#
#   tests/v4l2/guest.sh [COMMAND [ARG...]]     (default: a shell that lists the devices)
#
# This machine's kernel has no modules, so the V4L2 tests run under Debian's own kernel in a qemu
# guest (software emulation; no KVM needed). The guest sees the host's / read-only over virtio-9p,
# so the freshly built farmcam and its test binaries run inside unchanged, at the same paths, with
# writable tmpfs on /tmp, /run and /var/tmp (except one that holds this checkout), and
# TMPDIR=/dev/shm. Before COMMAND runs, the guest loads:
#
#   vivid         /dev/video0   a webcam-like capture device with raw formats (YUYV, NV12, ...)
#   v4l2loopback  /dev/video10  an empty loopback device (exclusive_caps=1): the tests feed it
#                                MJPEG with ffmpeg, as a USB camera would send it
#
# Needs (packaging/dev.sh installs them): qemu-system-x86, linux-image-amd64, linux-headers-amd64,
# v4l2loopback-dkms, busybox-static. Nothing of the guest survives it.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
work="${FARMCAM_GUEST_DIR:-$here/../../target/v4l2-guest}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"

fail() {
    echo "guest.sh: $*" >&2
    exit 2
}

# The kernel: the newest installed one that has v4l2loopback built for it (dkms builds it when
# v4l2loopback-dkms or a kernel is installed; build it here if that was skipped).
find_kernel() {
    for v in $(ls -1 /lib/modules 2>/dev/null | sort -rV); do
        [ -f "/boot/vmlinuz-$v" ] || continue
        if ls /lib/modules/"$v"/updates/dkms/v4l2loopback.ko* >/dev/null 2>&1; then
            echo "$v"
            return
        fi
    done
}
kver="$(find_kernel)"
if [ -z "$kver" ] && command -v dkms >/dev/null 2>&1; then
    for image in /boot/vmlinuz-*; do
        [ -f "$image" ] || continue
        v="${image#/boot/vmlinuz-}"
        dkms autoinstall -k "$v" >&2 || true
    done
    kver="$(find_kernel)"
fi
[ -n "$kver" ] || fail "no kernel with v4l2loopback; install it: apt-get install linux-image-amd64 linux-headers-amd64 v4l2loopback-dkms"
command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86_64 is missing; install it: apt-get install qemu-system-x86"
[ -x /bin/busybox ] || fail "/bin/busybox is missing; install it: apt-get install busybox-static"

# The initramfs: busybox, the modules needed to mount the host's / over 9p, and /init.
initrd="$work/initrd-$kver.gz"
if [ ! -f "$initrd" ] || [ "$0" -nt "$initrd" ]; then
    root="$work/initramfs"
    rm -rf "$root"
    mkdir -p "$root/bin" "$root/modules" "$root/proc" "$root/sys" "$root/dev" "$root/host"
    cp /bin/busybox "$root/bin/busybox"
    n=0
    for ko in $(for m in virtio_pci 9pnet_virtio 9p; do modprobe --show-depends -S "$kver" "$m"; done | awk '$1 == "insmod" { print $2 }' | awk '!seen[$0]++'); do
        n=$((n + 1))
        dst="$root/modules/$(printf %02d $n)-$(basename "$ko")"
        case "$ko" in
            *.xz) xz -dc "$ko" >"${dst%.xz}" ;;
            *.zst) zstd -qdc "$ko" >"${dst%.zst}" ;;
            *) cp "$ko" "$dst" ;;
        esac
    done
    cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in /modules/*.ko; do insmod "$m" || echo "guest: insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /host || { dmesg | tail -20;
    echo "guest: cannot mount the host's / over 9p"; echo "FARMCAM_GUEST_EXIT=3"; poweroff -f; }
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts
mount -t tmpfs shm /host/dev/shm
# Writable scratch space. A checkout under /tmp (a CI clone) must stay visible: then /tmp is
# left as the host's (read-only) and TMPDIR points at /dev/shm.
for d in /tmp /run /var/tmp; do
    grep -q "farmcam.keep=$d" /proc/cmdline || mount -t tmpfs tmp "/host$d"
done
ip link set lo up
cmd="$(sed -n 's/.*farmcam.run=\([^ ]*\).*/\1/p' /proc/cmdline)"
chroot /host /bin/sh "$cmd"
echo "FARMCAM_GUEST_EXIT=$?"
poweroff -f
EOF
    chmod +x "$root/init"
    (cd "$root" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) >"$initrd.tmp"
    mv "$initrd.tmp" "$initrd"
fi

# What runs inside: load the drivers, then COMMAND in the caller's directory, with its environment
# passed through variables the caller marks (RUST_LOG, FARMCAM_*, and the test harness's own).
run="$work/run-$$.sh"
trap 'rm -f "$run"' EXIT
trap 'exit 130' INT TERM
{
    echo "#!/bin/sh"
    echo "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/dev/shm TMPDIR=/dev/shm"
    env | grep -E '^(RUST_LOG|RUST_BACKTRACE|FARMCAM_[A-Z_]*|NEXTEST_[A-Z_]*)=' | while IFS= read -r kv; do
        printf 'export %s=%s\n' "${kv%%=*}" "$(printf '%s' "${kv#*=}" | sed "s/'/'\\\\''/g; s/^/'/; s/\$/'/")"
    done
    cat <<'EOF'
modprobe vivid n_devs=1 node_types=0x1 num_inputs=1 input_types=0x0 vid_cap_nr=0 || exit 90
modprobe v4l2loopback devices=1 video_nr=10 exclusive_caps=1 card_label="farmcam loopback" || exit 91
EOF
    printf 'cd %s || exit 92\n' "'$(pwd)'"
    if [ $# -eq 0 ]; then
        echo 'ls -l /dev/video*; for d in /dev/video*; do v4l2-ctl -d "$d" --info --list-formats-ext; done'
    else
        printf 'exec'
        for a in "$@"; do printf " '%s'" "$(printf '%s' "$a" | sed "s/'/'\\\\''/g")"; done
        echo
    fi
} >"$run"

# Directories the guest must see as they are on the host: this checkout and its target dir.
keep=""
for d in /tmp /run /var/tmp; do
    case "$work/ $(pwd)/" in
        "$d"/* | *" $d"/*) keep="$keep farmcam.keep=$d" ;;
    esac
done

log="$work/console-$$.log"
status=0
# --foreground: qemu stays in the caller's process group, so stopping the caller's group (an
# interrupted packaging/dev.sh test) stops the guest.
timeout --foreground "${FARMCAM_GUEST_TIMEOUT:-1800}" qemu-system-x86_64 \
    -machine q35 -accel tcg,thread=multi -cpu max -smp 2 -m 2048 \
    -nographic -no-reboot -nodefaults -serial stdio \
    -kernel "/boot/vmlinuz-$kver" -initrd "$initrd" \
    -append "console=ttyS0 panic=-1 loglevel=4 farmcam.run=$run$keep" \
    -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
    </dev/null | tee "$log" || status=$?
code="$(grep -ao 'FARMCAM_GUEST_EXIT=[0-9]*' "$log" | tail -n 1 | cut -d= -f2)"
rm -f "$log"
if [ -z "$code" ]; then
    fail "the guest ended without reporting a status (qemu exit $status)"
fi
exit "$code"
