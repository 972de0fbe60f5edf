#!/usr/bin/env bash
# A Debian root of a given release, made with mmdebstrap from Debian's own packages and
# cached outside the work tree, so that a rerun costs nothing. Prints its path.
#
#   packaging/debroot.sh RELEASE KIND      RELEASE: bookworm | trixie
#                                          KIND:    build | run
#
#   build  what packaging/build.sh needs to make the .deb inside the root: that release's
#          python3 and venv, setuptools, the compilers and headers for systemd-python,
#          dpkg-shlibdeps.
#   run    what the package needs at run time and its tests need around it: systemd (it
#          boots under systemd-nspawn), python3 and procps (the package's Depends), apt.
#          Nothing else, so that a dependency the package forgets to declare shows.
#
# Roots live in $HOSTSYNCD_ROOTS (default /var/cache/hostsyncd-roots), one directory per
# release and kind. Each records what it was made from (release, packages, mirror); a root
# made from anything else, or older than $HOSTSYNCD_ROOT_MAX_DAYS days (default 14: point
# releases bring fixes), is made again. The root itself is never changed afterwards: the
# build and the tests run on a throwaway overlay of it.
#
# The mirror is the one this machine's apt uses (the first Debian archive URI in
# /etc/apt/sources.list*), or $HOSTSYNCD_MIRROR.
set -euo pipefail
umask 022

die() {
    echo "debroot.sh: error: $*" >&2
    exit 1
}

[ $# -eq 2 ] || die "usage: $0 bookworm|trixie build|run"
release=$1 kind=$2
case $release in
    bookworm | trixie) ;;
    *) die "unknown release '$release' (bookworm or trixie)" ;;
esac
case $kind in
    build)
        include=python3,python3-venv,python3-dev,python3-setuptools,python3-wheel
        include+=,libsystemd-dev,pkg-config,gcc,dpkg-dev
        ;;
    run) include=systemd,python3,procps ;;
    *) die "unknown kind '$kind' (build or run)" ;;
esac

roots=${HOSTSYNCD_ROOTS:-/var/cache/hostsyncd-roots}
max_days=${HOSTSYNCD_ROOT_MAX_DAYS:-14}

mirror() {
    if [ -n "${HOSTSYNCD_MIRROR:-}" ]; then
        echo "$HOSTSYNCD_MIRROR"
        return
    fi
    local files=() uri
    shopt -s nullglob
    files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
    shopt -u nullglob
    # deb822 "URIs: ..." lines and one-line "deb [opts] URI suite ..." entries; the archive,
    # not the security one (its layout differs: suite-security).
    uri=$(cat "${files[@]}" 2>/dev/null | sed -n -e 's/^URIs:[[:space:]]*//p' \
        -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' |
        tr ' ' '\n' | grep -v -e '^$' -e security | head -n1)
    [ -n "$uri" ] || die "no Debian mirror in /etc/apt/sources.list*; set HOSTSYNCD_MIRROR"
    echo "$uri"
}

dir=$roots/$release-$kind
url=$(mirror)
recipe="mmdebstrap --variant=minbase --include=$include $release $url"
stamp=$dir/.hostsyncd-root

fresh() {
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$recipe" ] &&
        [ -z "$(find "$stamp" -mtime "+$max_days")" ]
}

mkdir -p "$roots"
# One maker per root; a second caller waits, then finds it made.
exec 9>"$roots/.lock-$release-$kind"
flock 9
if ! fresh; then
    command -v mmdebstrap >/dev/null || die "mmdebstrap not found (scripts/ensure-deps.sh deb)"
    echo "debroot.sh: making the $release $kind root in $dir (mirror $url)" >&2
    rm -rf "$dir.new"
    start=$SECONDS
    # Made beside the old one and swapped in whole: a root is never half made.
    mmdebstrap --quiet --variant=minbase --include="$include" "$release" "$dir.new" "$url" \
        >&2 || die "mmdebstrap failed for $release ($kind)"
    echo "$recipe" >"$dir.new/.hostsyncd-root"
    rm -rf "$dir"
    mv "$dir.new" "$dir"
    echo "debroot.sh: made $dir in $((SECONDS - start)) s" >&2
fi
echo "$dir"
