# Shared by the Python peers' run.sh (sourced): a venv made once from a pinned requirements file.
#   peer_venv NAME REQUIREMENTS [VENV]   sets $venv (default ${XDG_CACHE_HOME:-$HOME/.cache}/NAME-peer/venv-<hash>,
#                                        <hash> from REQUIREMENTS, so a changed pin gets a new venv)
#   venv_installed                       exit 1 with a hint if the venv is not ready, else print it
#   venv_ensure                          create it (once, under a lock: parallel callers are safe)
# The interpreter is Debian's /usr/bin/python3 unless PEER_PYTHON says otherwise.
peer_venv() {
    peer_name=$1
    peer_req=$2
    local cache=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}
    venv=${3:-$cache/$peer_name-peer/venv-$(sha256sum "$peer_req" | cut -c1-12)}
    peer_py=${PEER_PYTHON:-/usr/bin/python3}
    [ -x "$peer_py" ] || peer_py=$(command -v python3)
}

venv_installed() {
    [ -e "$venv/.complete" ] || { echo "run.sh: the $peer_name venv is not installed: run packaging/dev.sh deps (or run.sh --install)" >&2; exit 1; }
    echo "$venv"
}

venv_ensure() {
    [ -e "$venv/.complete" ] && return 0
    mkdir -p "$(dirname "$venv")"
    exec 9>"$venv.lock"
    flock 9
    if [ ! -e "$venv/.complete" ]; then
        rm -rf "$venv"
        "$peer_py" -m venv "$venv" >&2 ||
            { echo "run.sh: '$peer_py -m venv' failed: apt-get install python3-venv" >&2; exit 1; }
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$peer_req" >&2
        touch "$venv/.complete"
    fi
    exec 9>&-
}
