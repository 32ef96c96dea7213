#!/usr/bin/env bash
# Start a standalone Moonraker 0.11.0 (no Klipper, no systemd, no D-Bus) in the foreground,
# listening on 127.0.0.1:PORT, with all of its state (config, sqlite db, logs, socket) in DATA_DIR.
#
#   run.sh PORT DATA_DIR
#   run.sh --install        only create the venv (a CI set-up step), print its path, exit
#   run.sh --installed      exit 0 (printing the venv's path) if the venv is ready, else 1, at once
#
# Environment (all optional):
#   MOONRAKER_VENV     venv to use/create (default: ${XDG_CACHE_HOME:-$HOME/.cache}/moonraker-peer/venv-<hash>,
#                      <hash> from requirements.txt, so a changed pin gets a new venv)
#   MOONRAKER_PYTHON   interpreter for a new venv (default: /usr/bin/python3, Debian's)
#   MOONRAKER_TRUSTED  trusted_clients value (default: 127.0.0.1/32). Set it empty to make every
#                      request need the API key (header X-Api-Key; see README.md for reading it).
#   MOONRAKER_EXTRA_CONF  text appended to moonraker.conf (e.g. a "[webcam name]" section).
#
# The venv is created once (about 8 s, needs PyPI) under a lock, so parallel callers are safe.
# Ready when GET http://127.0.0.1:PORT/access/info answers 200 (no auth needed; about 0.3 s after
# start with the venv in place). SIGTERM stops it (0.2 s, at most about 2 s), exit status 0.
set -euo pipefail

usage() { echo "usage: $0 PORT DATA_DIR | $0 --install | $0 --installed" >&2; exit 2; }
install_only=
check_only=
if [ $# -eq 1 ] && [ "$1" = --install ]; then
    install_only=1
elif [ $# -eq 1 ] && [ "$1" = --installed ]; then
    check_only=1
else
    [ $# -eq 2 ] || usage
    port=$1
    case $port in '' | *[!0-9]*) usage ;; esac
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
req="$here/requirements.txt"

. "$here/../venv.sh"
PEER_PYTHON=${MOONRAKER_PYTHON:-} peer_venv moonraker "$req" "${MOONRAKER_VENV:-}"

if [ -n "$check_only" ]; then
    venv_installed
    exit 0
fi
venv_ensure

# libnacl (used by Moonraker's core authorization component) loads libsodium at import.
"$venv/bin/python" -c 'import libnacl' 2>/dev/null ||
    { echo "run.sh: libsodium not found: apt-get install libsodium23" >&2; exit 1; }
if [ -n "$install_only" ]; then
    echo "$venv"
    exit 0
fi

mkdir -p "$2"
data=$(cd "$2" && pwd)
mkdir -p "$data/config" "$data/misc" "$data/logs"
# An existing misc/usb.ids stops Moonraker downloading it from linux-usb.org at start-up.
[ -e "$data/misc/usb.ids" ] || : >"$data/misc/usb.ids"

trusted=${MOONRAKER_TRUSTED-127.0.0.1/32}
{
    cat <<EOF
[server]
host: 127.0.0.1
port: $port
# Klipper is absent: Moonraker keeps retrying this socket quietly and reports klippy_state "disconnected".
klippy_uds_address: $data/comms/klippy.sock

[authorization]
EOF
    [ -z "$trusted" ] || printf 'trusted_clients:\n    %s\n' "$trusted"
    cat <<EOF

[machine]
provider: none
validate_service: False
validate_config: False

[announcements]
# no fetching of announcement feeds from the internet
enable_moonlight: False
EOF
    [ -z "${MOONRAKER_EXTRA_CONF:-}" ] || printf '\n%s\n' "$MOONRAKER_EXTRA_CONF"
} >"$data/config/moonraker.conf"

exec "$venv/bin/python" -m moonraker -d "$data" -c "$data/config/moonraker.conf" \
    -l "$data/logs/moonraker.log"
