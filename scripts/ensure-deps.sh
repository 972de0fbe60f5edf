#!/usr/bin/env bash
# Install the Debian packages hostsyncd's build and tests need. Quick and silent when they
# are all present (checked with `dpkg -s`); runs `apt-get update` only when something is
# missing.
#
#   scripts/ensure-deps.sh            everything below
#   scripts/ensure-deps.sh GROUP...   only these groups:
#     engine   docker.io busybox-static iproute2   the private test engine (privengine.py)
#     podman   podman                              the private Podman service of
#                                                  tests/integration/test_podman.py
#                                                  (scripts/privpodman.py)
#     python   python3-venv python3-dev            virtualenvs, C extensions
#              libsystemd-dev pkg-config gcc       building systemd-python (journald output)
#     journald systemd
#     docs     graphviz
#     etcd     etcd-server etcd-client             the private etcd cluster of the cluster
#                                                  tests (scripts/etcdcluster.py)
#     deb      mmdebstrap systemd-container        `make deb`: a root per Debian release
#                                                  (packaging/debroot.sh), the build in it
#                                                  and the tests' systemd (systemd-nspawn)
#     engines  (needs engine) Docker 26 and 28 for the test matrix, fetched from Debian 13
#              and unstable by scripts/fetch-engines.sh into /var/cache/hostsyncd-engines
#              (apt's own state untouched); quick when they are there already
set -euo pipefail

declare -A groups=(
    [engine]="docker.io busybox-static iproute2"
    [podman]="podman"
    [python]="python3-venv python3-dev libsystemd-dev pkg-config gcc"
    [journald]="systemd"
    [docs]="graphviz"
    [etcd]="etcd-server etcd-client"
    [deb]="mmdebstrap systemd-container"
)

wanted=("$@")
if [ "${#wanted[@]}" -eq 0 ]; then
    wanted=(engine podman python journald docs deb etcd engines)
fi

fetch_engines=false

packages=()
for group in "${wanted[@]}"; do
    if [ "$group" = engines ]; then
        # Not Debian 12 packages: unpacked beside them, after them (docker-init is theirs).
        fetch_engines=true
        group=engine
    fi
    if [ -z "${groups[$group]+set}" ]; then
        echo "ensure-deps: unknown group '$group' (known: ${!groups[*]})" >&2
        exit 2
    fi
    read -r -a members <<<"${groups[$group]}"
    packages+=("${members[@]}")
done

missing=()
for pkg in "${packages[@]}"; do
    # Captured, not piped into `grep -q`: that closes the pipe early and, with pipefail,
    # turns dpkg's SIGPIPE into a false "missing".
    status=$(dpkg -s "$pkg" 2>/dev/null || true)
    if [[ $'\n'"$status"$'\n' != *$'\nStatus: install ok installed\n'* ]]; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "ensure-deps: missing ${missing[*]}; run as root to install them" >&2
        exit 1
    fi
    echo "ensure-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

if "$fetch_engines"; then
    "$(dirname "$0")/fetch-engines.sh"
fi
