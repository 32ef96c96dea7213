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
. "$here/../venv.sh"
peer_venv aiortc "$req" "${AIORTC_VENV:-}"

if [ "${1:-}" = --installed ]; then
    venv_installed
    exit 0
fi
venv_ensure
if [ "${1:-}" = --install ]; then
    echo "$venv"
    exit 0
fi
exec "$venv/bin/python" "$here/client.py" "$@"
