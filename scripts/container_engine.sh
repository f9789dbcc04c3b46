#!/usr/bin/env bash
# The local Docker engine the container tests and local container runs need (issue #12):
# Debian's docker.io, dockerd started as root, and the base image runctl-local/python:bookworm
# made offline (no image registry is reachable here, so nothing can be pulled).
# Idempotent: when the engine answers and the image exists it only checks, in well under a second.
set -euo pipefail

BASE_IMAGE="runctl-local/python:bookworm"
# Bump when what the base image holds changes: an image with another label is made again.
BASE_VERSION="2"  # 2: python3-numpy, so examples/train_tiny.py runs in it
DOCKERD_LOG="${RUNCTL_DOCKERD_LOG:-/var/log/runctl-dockerd.log}"
WAIT_SECONDS=60

say() { echo "container-engine: $*"; }

# Debian's CLI (20.10) here, as it matches Debian's daemon. A newer CLI earlier on PATH (this
# machine has Docker 28.2's in /usr/local/bin, which the agent and tests find first) negotiates
# down to the daemon's API 1.41 and works too (measured: docs/progress.md, "#12 facts (engine)").
if [[ -x /usr/bin/docker ]]; then
    docker() { /usr/bin/docker "$@"; }
fi

engine_answers() { docker info >/dev/null 2>&1; }

# apt's output only when it fails (debconf's notices are noise otherwise).
apt_install() {
    local log
    log="$(mktemp)"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >"$log" 2>&1; then
        say "apt-get install $* failed:"
        tail -n 20 "$log" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
}

as_root() {
    if [[ $(id -u) -ne 0 ]]; then
        say "no Docker engine answers and this is not root: $1"
        say "install Docker (Debian: apt-get install docker.io), start dockerd, and make sure" \
            "'docker info' works for $(id -un); then run 'make container-engine' again"
        exit 1
    fi
}

if engine_answers; then
    say "the Docker engine answers"
else
    if ! command -v dockerd >/dev/null 2>&1; then
        as_root "dockerd is missing"
        say "installing docker.io (Debian's package: dockerd, containerd, runc, tini)"
        apt_install docker.io
        docker() { /usr/bin/docker "$@"; }
    fi
    as_root "dockerd is not running (or this user may not use its socket)"
    # No systemd here: dockerd runs in the background, detached from make's session.
    say "starting dockerd (log: $DOCKERD_LOG)"
    setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    for ((waited = 0; waited < WAIT_SECONDS; waited++)); do
        engine_answers && break
        sleep 1
    done
    if ! engine_answers; then
        say "dockerd did not answer within ${WAIT_SECONDS} s; the end of $DOCKERD_LOG:"
        tail -n 20 "$DOCKERD_LOG" >&2 || true
        exit 1
    fi
    say "the Docker engine answers after ${waited} s"
fi

have_version="$(docker image inspect -f '{{index .Config.Labels "runctl.base-version"}}' \
    "$BASE_IMAGE" 2>/dev/null || true)"
if [[ "$have_version" == "$BASE_VERSION" ]]; then
    say "base image $BASE_IMAGE (version $BASE_VERSION) is there"
    exit 0
fi
as_root "the base image $BASE_IMAGE (version $BASE_VERSION) is missing"
if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap"
    apt_install debootstrap
fi
root_dir="$(mktemp -d /tmp/runctl-bookworm.XXXXXX)"
trap 'rm -rf "$root_dir" "$root_dir.log"' EXIT
say "building $BASE_IMAGE with debootstrap (about a minute)"
if ! debootstrap --variant=minbase --include=python3,python3-numpy bookworm "$root_dir" >"$root_dir.log" 2>&1; then
    say "debootstrap failed; the end of its log:"
    tail -n 20 "$root_dir.log" >&2
    exit 1
fi
tar -C "$root_dir" -c . |
    docker import --change "LABEL runctl.base-version=$BASE_VERSION" - "$BASE_IMAGE" >/dev/null
say "base image $BASE_IMAGE imported"
