#!/usr/bin/env bash
# Fetch the newer Docker engines the test matrix runs beside Debian 12's 20.10, without
# touching the machine's apt state (see ../README.md "Engines tested"):
#
#   26   docker.io + containerd from Debian 13 (trixie): Docker 26.1, containerd 1.7
#   28   docker.io + containerd from Debian unstable (sid): Docker 28.5, containerd 2.1
#
# For each, apt reads a private sources list naming the same Debian mirror this machine's
# apt already uses, with private lists and cache directories; `apt-get download` fetches
# the two packages and `dpkg-deb -x` unpacks each into a directory of its own under
#
#   $HSD_ENGINES_CACHE (default /var/cache/hostsyncd-engines)/<version>/
#       docker.io/ containerd/   the unpacked packages
#       bin/                     symlinks to dockerd, docker-proxy, docker-init, containerd,
#                                containerd-shim-runc-v2 only: put first on PATH, so that
#                                runc stays Debian 12's (unstable's needs glibc 2.38)
#       VERSION                  what `dockerd --version` says
#
# A version already there, whose dockerd runs, is left alone: a rerun costs milliseconds.
#
#   scripts/fetch-engines.sh            both
#   scripts/fetch-engines.sh 26 ...     only these
set -euo pipefail

CACHE=${HSD_ENGINES_CACHE:-/var/cache/hostsyncd-engines}
declare -A suites=([26]=trixie [28]=sid)
wanted=("$@")
if [ "${#wanted[@]}" -eq 0 ]; then
    wanted=(26 28)
fi

# The Debian archive this machine's apt uses: the URI serving its own release (bookworm).
mirror() {
    local codename uri release
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    while read -r uri release; do
        if [ "$release" = "$codename" ]; then
            echo "${uri%/}"
            return
        fi
    done < <(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null | sort -u)
    echo "http://deb.debian.org/debian"
}

ready() {  # ready VERSION: the unpacked engine is there and its dockerd runs
    local dir=$CACHE/$1
    [ -f "$dir/VERSION" ] && "$dir/bin/dockerd" --version >/dev/null 2>&1 \
        && "$dir/bin/containerd" --version >/dev/null 2>&1
}

fetch() {  # fetch VERSION
    local version=$1 suite=${suites[$1]}
    # Global, so the EXIT trap removes it also when a failure ends the script (set -e).
    work=$(mktemp -d "$CACHE/.fetch-$version.XXXXXX")
    mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$work/out/bin"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(mirror) $suite main" \
        >"$work/sources.list"
    local apt=(apt-get -q -o "Dir::Etc::SourceList=$work/sources.list"
               -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$work/lists"
               -o "Dir::Cache=$work/cache" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
               -o APT::Sandbox::User=root)
    echo "fetch-engines: Docker $version from Debian $suite ($(mirror))" >&2
    "${apt[@]}" update >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; return 1; }
    (cd "$work/debs" && "${apt[@]}" download docker.io containerd) >>"$work/apt.log" 2>&1 \
        || { cat "$work/apt.log" >&2; return 1; }
    local pkg deb
    for pkg in docker.io containerd; do
        deb=$(ls "$work/debs/${pkg}"_*.deb)
        mkdir -p "$work/out/$pkg"
        dpkg-deb -x "$deb" "$work/out/$pkg"
        basename "$deb" >>"$work/out/PACKAGES"
    done
    local name path
    for name in dockerd docker-proxy docker-init containerd containerd-shim-runc-v2; do
        path=""
        for candidate in docker.io/usr/sbin docker.io/usr/bin docker.io/usr/libexec/docker \
                         containerd/usr/bin containerd/usr/sbin; do
            if [ -x "$work/out/$candidate/$name" ] && [ -f "$work/out/$candidate/$name" ]; then
                path=../$candidate/$name
                break
            fi
        done
        if [ -z "$path" ] && [ "$name" = docker-init ]; then
            # docker.io's docker-init links to tini-static from the tini package, which
            # Debian 12's docker.io brought along: a static binary, the same for every engine.
            path=$(command -v docker-init || true)
        fi
        if [ -z "$path" ]; then
            echo "fetch-engines: no $name in Debian $suite's docker.io/containerd" >&2
            return 1
        fi
        ln -s "$path" "$work/out/bin/$name"
    done
    local said
    said=$("$work/out/bin/dockerd" --version)
    case "$said" in
        "Docker version $version."*) ;;
        *)
            # Debian unstable moves on: say so rather than test another engine under this name.
            echo "fetch-engines: Debian $suite now ships '$said', not Docker $version" >&2
            return 1 ;;
    esac
    echo "$said" >"$work/out/VERSION"
    rm -rf "${CACHE:?}/$version"
    mv "$work/out" "$CACHE/$version"
    echo "fetch-engines: $said in $CACHE/$version" >&2
    rm -rf "$work"
    work=
}

work=
trap '[ -z "$work" ] || rm -rf "$work"' EXIT

mkdir -p "$CACHE"
for version in "${wanted[@]}"; do
    if [ -z "${suites[$version]+set}" ]; then
        echo "fetch-engines: unknown engine '$version' (known: ${!suites[*]})" >&2
        exit 2
    fi
    if ready "$version"; then
        continue
    fi
    if [ "$(id -u)" -ne 0 ] && [ ! -w "$CACHE" ]; then
        echo "fetch-engines: Docker $version is missing in $CACHE; run as root" >&2
        exit 1
    fi
    # One fetch at a time per cache (parallel `make test` runs share it).
    exec 9>"$CACHE/.lock"
    flock 9
    if ! ready "$version"; then
        fetch "$version"  # not in an || list: set -e must hold inside it
    fi
    exec 9>&-
done
