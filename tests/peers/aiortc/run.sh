#!/usr/bin/env bash
# A WebRTC viewer that is not a browser (client.py, on aiortc), in a venv of its own.
#
#   run.sh ARGS...          run client.py ARGS (see client.py: --whep URL | --camera-streamer URL)
#   run.sh --install        only create the venv (a CI set-up step), print its path, exit
#   run.sh --installed      exit 0 (printing the venv's path) if the venv is ready, else 1, at once
#
# Environment (optional): AIORTC_VENV, the venv to use/create (default:
# ${XDG_CACHE_HOME:-$HOME/.cache}/aiortc-peer/venv-<hash>, <hash> from requirements.txt).
# The venv is created once (a few seconds, needs PyPI) under a lock, so parallel callers are safe.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
req="$here/requirements.txt"
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)
cache=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}
venv=${AIORTC_VENV:-$cache/aiortc-peer/venv-$(sha256sum "$req" | cut -c1-12)}

if [ "${1:-}" = --installed ]; then
    [ -e "$venv/.complete" ] || { echo "run.sh: the aiortc venv is not installed: run packaging/dev.sh deps (or $0 --install)" >&2; exit 1; }
    echo "$venv"
    exit 0
fi
if [ ! -e "$venv/.complete" ]; then
    mkdir -p "$(dirname "$venv")"
    exec 9>"$venv.lock"
    flock 9
    if [ ! -e "$venv/.complete" ]; then
        rm -rf "$venv"
        "$py" -m venv "$venv" >&2 ||
            { echo "run.sh: '$py -m venv' failed: apt-get install python3-venv" >&2; exit 1; }
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
        touch "$venv/.complete"
    fi
    exec 9>&-
fi
if [ "${1:-}" = --install ]; then
    echo "$venv"
    exit 0
fi
exec "$venv/bin/python" "$here/client.py" "$@"
