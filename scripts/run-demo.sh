#!/usr/bin/env bash
# `make run`: the daemon in the foreground against the local engine, or, when none answers
# at /var/run/docker.sock, against a private demo engine under .run/ that touches nothing
# else on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
SYSTEM_ENGINE=unix:///var/run/docker.sock

engine_answers() {
    "$PY" - "$1" <<'PY' >/dev/null 2>&1
import sys, docker
docker.APIClient(base_url=sys.argv[1], version="auto", timeout=3).ping()
PY
}

example() {  # $1 DOCKER_HOST, $2 image
    cat <<TXT

  hostsyncd is running. In another terminal, paste:

    export DOCKER_HOST=$1
    docker run -d --name mysql $2 sleep 3600
    docker run -d --name web -l hostsyncd.links=mysql:db $2 sleep 3600; sleep 1; docker exec web cat /etc/hosts

  Then 'docker restart -t 0 mysql' (busybox ignores SIGTERM) and read web's /etc/hosts again: the db line follows.

TXT
}

if engine_answers "$SYSTEM_ENGINE"; then
    example "$SYSTEM_ENGINE" busybox
    exec .venv/bin/hostsyncd run --config config.example.toml
fi

echo "run: no engine answers at $SYSTEM_ENGINE; starting a private demo engine under .run/" >&2
scripts/ensure-deps.sh
mkdir -p .run
eval "$(python3 scripts/privengine.py start --root "$PWD/.run/engine" \
        --bridge hsddemo0 --cidr 10.232.0.1/24 --image hostsyncd-demo/busybox:1)"
sed -e "s|^url = .*|url = \"$DOCKER_HOST\"|" \
    -e "s|^containers_root = .*|containers_root = \"$CONTAINERS_ROOT\"|" \
    -e "s|^output = .*|output = \"console\"|" \
    config.example.toml > .run/config.toml
example "$DOCKER_HOST" hostsyncd-demo/busybox:1
echo "  (config: .run/config.toml, which is config.example.toml pointed at the demo engine;"
echo "   stop the demo engine with: python3 scripts/privengine.py stop --root .run/engine)"
echo
exec .venv/bin/hostsyncd run --config .run/config.toml
