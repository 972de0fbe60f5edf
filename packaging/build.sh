#!/usr/bin/env bash
# Release artifacts; `make dist` and `make deb` call this.
#
#   packaging/build.sh dist   wheel and sdist of hostsyncd in dist/ (python -m build)
#   packaging/build.sh deb    one .deb per Debian release (needs the wheel):
#                               dist/hostsyncd_<version>+deb12_<arch>.deb  bookworm, Python 3.11
#                               dist/hostsyncd_<version>+deb13_<arch>.deb  trixie, Python 3.13
#                             $DEB_RELEASES picks some ("bookworm trixie" by default).
#
# Each step records a hash of its inputs under build/ and does nothing when the artifact
# is there and its inputs have not changed. The .deb's third-party wheels are kept in
# build/wheelhouse/, by lock file and interpreter, so a rebuild compiles nothing.
#
# A .deb holds a venv at /opt/hostsyncd, made from its release's /usr/bin/python3, and
# compiled modules built against that release's libraries. So each is built inside a root
# of its release (packaging/debroot.sh, cached outside the work tree), under
# systemd-nspawn on a throwaway overlay, with the work tree bound at /src and no network:
# the third-party distributions are downloaded beforehand, here, for that interpreter.
#
# A venv is not relocatable, so it is built in a staging tree
# (build/deb-<release>/root/opt/hostsyncd), then every place that names the staging path
# (script shebangs, pyvenv.cfg, activate scripts) is rewritten to /opt/hostsyncd, and the
# bytecode is compiled with /opt/hostsyncd as its source path. The build fails if the
# staging path is left anywhere in the tree. Nothing is written outside the work tree but
# the cached roots.
set -euo pipefail
umask 022
cd "$(dirname "$0")/.."
top=$PWD

SYSTEM_PYTHON=/usr/bin/python3 # what the package runs on, inside its release's root
PY=${PY:-.venv/bin/python}     # the project venv: runs python -m build and pip download
RELEASES=${DEB_RELEASES:-bookworm trixie}

log() { echo "build.sh: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

version=$(packaging/pyproject-info.py version)
wheel=dist/hostsyncd-$version-py3-none-any.whl
sdist=dist/hostsyncd-$version.tar.gz

# sha256 over the named files' paths and contents (directories: their files, bytecode and
# editor droppings left out), plus any extra words given after --.
inputs_hash() {
    local files=() extra=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        files+=("$1")
        shift
    done
    [ $# -gt 0 ] && shift && extra=("$@")
    {
        find "${files[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -name '*~' \
            -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
        printf '%s\n' "${extra[@]}"
    } | sha256sum | cut -d' ' -f1
}

up_to_date() { # stamp-file hash artifact...
    local stamp=$1 hash=$2
    shift 2
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ] || return 1
    local f
    for f in "$@"; do [ -f "$f" ] || return 1; done
}

build_dist() {
    local dist_inputs=(pyproject.toml README.md hostsyncd)
    [ -e MANIFEST.in ] && dist_inputs+=(MANIFEST.in)
    local hash
    hash=$(inputs_hash "${dist_inputs[@]}")
    if up_to_date build/dist.inputs "$hash" "$wheel" "$sdist"; then
        log "$wheel and $sdist are up to date"
        return
    fi
    [ -x "$PY" ] || die "$PY not found: run 'make venv' first"
    if ! "$PY" -c 'import build' 2>/dev/null; then
        log "installing 'build' into $(dirname "$(dirname "$PY")")"
        "$PY" -m pip install -q 'build>=1.2'
    fi
    mkdir -p build dist
    rm -f "$wheel" "$sdist" build/dist.inputs
    "$PY" -m build --sdist --wheel --outdir dist . >build/dist.log 2>&1 ||
        { cat build/dist.log >&2; die "python -m build failed"; }
    if [ ! -f "$wheel" ] || [ ! -f "$sdist" ]; then
        die "python -m build did not make $wheel and $sdist"
    fi
    echo "$hash" >build/dist.inputs
    log "built $wheel and $sdist"
}

# Check that the lock file was made from pyproject.toml's current requirements.
check_lock() {
    local lock=packaging/requirements.lock want have
    [ -f "$lock" ] || die "$lock is missing: run packaging/lock.sh"
    want=$(packaging/pyproject-info.py inputs-sha256)
    have=$(sed -n 's/^# inputs-sha256: //p' "$lock")
    [ "$want" = "$have" ] ||
        die "$lock does not match pyproject.toml's requirements: run packaging/lock.sh"
}

# release -> Debian version number and the Python it ships.
release_number() {
    case $1 in
        bookworm) echo 12 ;;
        trixie) echo 13 ;;
        *) die "unknown release '$1' (bookworm or trixie)" ;;
    esac
}
release_python() {
    case $1 in
        bookworm) echo 3.11 ;;
        trixie) echo 3.13 ;;
    esac
}

deb_path() { # release arch
    echo "dist/hostsyncd_${version}+deb$(release_number "$1")_$2.deb"
}

# The third-party distributions of the lock, as wheels for the release's interpreter where
# PyPI has them, else as sdists (systemd-python) to build inside the root. Fetched here,
# with this machine's pip and its network settings, because the build root has no network.
fetch_downloads() { # release arch -> prints the directory
    local release=$1 arch=$2 pyver machine dir tag
    pyver=$(release_python "$release")
    tag=${pyver/./}
    machine=$(uname -m)
    dir=build/downloads/$(inputs_hash packaging/requirements.lock -- "$arch" "$pyver")
    if [ ! -f "$dir/.complete" ]; then
        [ -x "$PY" ] || die "$PY not found: run 'make venv' first"
        log "downloading the locked distributions for Python $pyver into $dir"
        rm -rf "$dir"
        local platforms=() glibc
        # manylinux wheels up to the release's glibc (2.36 in bookworm, 2.41 in trixie).
        glibc=$([ "$release" = bookworm ] && echo 36 || echo 41)
        for ((minor = 5; minor <= glibc; minor++)); do
            platforms+=(--platform "manylinux_2_${minor}_$machine")
        done
        platforms+=(--platform "manylinux2014_$machine" --platform "linux_$machine")
        "$PY" -m pip download -q --disable-pip-version-check --no-deps --dest "$dir" \
            --implementation cp --python-version "$pyver" --abi "cp$tag" --abi abi3 \
            --abi none "${platforms[@]}" -r packaging/requirements.lock >&2 ||
            die "pip download failed"
        touch "$dir/.complete"
    fi
    echo "$dir"
}

# On the build machine: for each release, unless its .deb is up to date, make (or reuse)
# its build root and run build_deb_in_root there.
build_debs() {
    [ -f "$wheel" ] || die "$wheel not found: run 'make dist' first"
    check_lock
    command -v systemd-nspawn >/dev/null ||
        die "systemd-nspawn not found (scripts/ensure-deps.sh deb)"
    local arch release root hash deb downloads start
    arch=$(dpkg --print-architecture)
    for release in $RELEASES; do
        release_number "$release" >/dev/null
        deb=$(deb_path "$release" "$arch")
        root=$(packaging/debroot.sh "$release" build)
        hash=$(inputs_hash "$wheel" packaging systemd config.example.toml README.md \
            -- "$arch" "$release" "$(cat "$root/.hostsyncd-root")" "${DEB_MAINTAINER:-}")
        if up_to_date "build/deb-$release.inputs" "$hash" "$deb"; then
            log "$deb is up to date"
            continue
        fi
        rm -f "build/deb-$release.inputs"
        downloads=$(fetch_downloads "$release" "$arch")
        start=$SECONDS
        # --volatile=overlay: the root is the lower layer of a tmpfs overlay, so the build
        # leaves it as it was. Only /src (this work tree) is written.
        # A name of its own: builds in other work trees may use the same root at once.
        systemd-nspawn --quiet --register=no --keep-unit --volatile=overlay --pipe \
            --private-network -D "$root" -M "hsdbuild-$release-$$" \
            --bind="$top:/src" --chdir=/src \
            --setenv=LANG=C.UTF-8 --setenv=DEB_MAINTAINER="${DEB_MAINTAINER:-}" \
            --setenv=PIP_NO_INPUT=1 --setenv=PIP_DISABLE_PIP_VERSION_CHECK=1 \
            -- /bin/bash packaging/build.sh deb-in-root "$release" "$downloads" ||
            die "the build in the $release root failed"
        [ -f "$deb" ] || die "the build in the $release root made no $deb"
        echo "$hash" >"build/deb-$release.inputs"
        log "built $deb in the $release root in $((SECONDS - start)) s"
    done
}

# Inside the release's root (/src is the work tree): the venv, the tree, the .deb.
build_deb_in_root() {
    local release=$1 downloads=$2
    [ -x "$SYSTEM_PYTHON" ] || die "$SYSTEM_PYTHON not found (apt-get install python3)"
    local arch pyver minor next number deb unitdir
    arch=$(dpkg --print-architecture)
    number=$(release_number "$release")
    pyver=$("$SYSTEM_PYTHON" -c 'import platform; print(platform.python_version())')
    minor=$(release_python "$release")
    case $pyver in
        "$minor".*) ;;
        *) die "$SYSTEM_PYTHON is Python $pyver; $release ships $minor" ;;
    esac
    next=${minor%.*}.$((${minor#*.} + 1))
    deb=$(deb_path "$release" "$arch")
    # Debian 13 ships units in /usr/lib (merged /usr); 12 still in /lib.
    unitdir=/lib/systemd/system
    [ "$number" -ge 13 ] && unitdir=/usr/lib/systemd/system

    local work=$top/build/deb-$release
    local stage=$work/root
    local venv=$stage/opt/hostsyncd
    rm -rf "$work"
    mkdir -p "$stage"

    # The venv has no pip of its own: Debian's pip wheel (python3-pip-whl, which
    # python3-venv pulls in) runs straight from the archive.
    local pipwhl
    pipwhl=$(find /usr/share/python-wheels -name 'pip-*.whl' 2>/dev/null | sort -V | tail -n1)
    [ -n "$pipwhl" ] || die "Debian's pip wheel is missing (apt-get install python3-venv)"
    "$SYSTEM_PYTHON" -m venv --without-pip "$venv"
    local pip=("$venv/bin/python" "$pipwhl/pip" --disable-pip-version-check -q)

    # Third-party wheels, built once per lock file and interpreter, offline, from what
    # fetch_downloads got (systemd-python compiles against libsystemd-dev and python3-dev;
    # its build backend, setuptools, is Debian's, run by the system interpreter).
    local wheelhouse
    wheelhouse=build/wheelhouse/$(inputs_hash packaging/requirements.lock -- "$arch" "$pyver")
    if [ ! -f "$wheelhouse/.complete" ]; then
        log "building the dependency wheels into $wheelhouse"
        rm -rf "$wheelhouse"
        "$SYSTEM_PYTHON" "$pipwhl/pip" --disable-pip-version-check -q wheel --no-index \
            --no-build-isolation --use-pep517 --find-links "$downloads" --no-deps \
            -r packaging/requirements.lock -w "$wheelhouse"
        touch "$wheelhouse/.complete"
    fi
    "${pip[@]}" install --no-index --no-deps --no-compile --find-links "$wheelhouse" \
        -r packaging/requirements.lock "$wheel"
    "${pip[@]}" check

    # Relocate: the staging path becomes /opt/hostsyncd.
    find "$venv" -name __pycache__ -type d -prune -exec rm -rf {} +
    find "$venv" -name direct_url.json -path '*.dist-info/*' -delete # names the build dir
    local f
    for f in "$venv/pyvenv.cfg" "$venv"/bin/*; do
        if [ -f "$f" ] && [ ! -L "$f" ] && grep -qF "$venv" "$f"; then
            sed -i "s|$venv|/opt/hostsyncd|g" "$f"
        fi
    done
    cp packaging/requirements.lock "$venv/requirements.lock"
    "$SYSTEM_PYTHON" -m compileall -q -j0 --invalidation-mode timestamp \
        -s "$stage" -p / "$venv/lib" >/dev/null

    # The rest of the tree.
    install -D -m 0644 systemd/hostsyncd.service "$stage$unitdir/hostsyncd.service"
    install -D -m 0644 config.example.toml "$stage/etc/hostsyncd/config.toml"
    mkdir -p "$stage/usr/bin"
    ln -s /opt/hostsyncd/bin/hostsyncd "$stage/usr/bin/hostsyncd"
    install -D -m 0644 packaging/debian/copyright "$stage/usr/share/doc/hostsyncd/copyright"
    install -D -m 0644 systemd/hostsyncd.service.d/metrics.conf.example \
        "$stage/usr/share/doc/hostsyncd/examples/metrics.conf"
    gzip -9n <README.md >"$stage/usr/share/doc/hostsyncd/README.md.gz"

    find "$stage" -type d -exec chmod 0755 {} +
    find "$stage" -type f -perm /111 -exec chmod 0755 {} +
    find "$stage" -type f ! -perm /111 -exec chmod 0644 {} +
    # The config may hold etcd credentials (cluster.password): root's alone. `hostsyncd
    # status` does without it (cli.py).
    chmod 0600 "$stage/etc/hostsyncd/config.toml"

    if grep -rlF "$stage" "$stage" >"$work/leftover-paths.txt"; then
        head "$work/leftover-paths.txt" >&2
        die "the staging path $stage is still named in the files above"
    fi

    # Shared-library dependencies of the compiled modules, as dpkg-shlibdeps works them out.
    local sofiles=() shlibs
    mapfile -t sofiles < <(find "$stage" -type f -name '*.so*' | LC_ALL=C sort)
    mkdir -p "$work/shlibdeps/debian"
    printf 'Source: hostsyncd\n\nPackage: hostsyncd\nArchitecture: any\n' \
        >"$work/shlibdeps/debian/control"
    (cd "$work/shlibdeps" && dpkg-shlibdeps -O "${sofiles[@]/#/-e}") \
        >"$work/shlibdeps.out" 2>"$work/shlibdeps.err" ||
        { cat "$work/shlibdeps.err" >&2; die "dpkg-shlibdeps failed"; }
    shlibs=$(sed -n 's/^shlibs:Depends=//p' "$work/shlibdeps.out")
    case $shlibs in
        *libsystemd0*) ;;
        *) die "dpkg-shlibdeps found no libsystemd0 dependency (got '$shlibs')" ;;
    esac

    # DEBIAN/
    local debian=$stage/DEBIAN size
    mkdir -p "$debian"
    size=$(du -sk --apparent-size --exclude=DEBIAN "$stage" | cut -f1)
    sed -e "s|@VERSION@|$version+deb$number|" -e "s|@ARCH@|$arch|" \
        -e "s|@MAINTAINER@|${DEB_MAINTAINER:-hostsyncd maintainers <root@localhost>}|" \
        -e "s|@INSTALLED_SIZE@|$size|" -e "s|@SHLIBS_DEPENDS@|$shlibs|" \
        -e "s|@PYTHON@|$minor|g" -e "s|@PYTHON_NEXT@|$next|g" \
        packaging/debian/control.in >"$debian/control"
    echo /etc/hostsyncd/config.toml >"$debian/conffiles"
    install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm \
        "$debian/"
    (cd "$stage" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' |
        LC_ALL=C sort -z | xargs -0 md5sum) >"$debian/md5sums"
    chmod 0644 "$debian/control" "$debian/conffiles" "$debian/md5sums"

    # SOURCE_DATE_EPOCH would clamp the files' mtimes, and the bytecode records them.
    mkdir -p dist
    rm -f "$deb"
    env -u SOURCE_DATE_EPOCH dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb.tmp" \
        >/dev/null
    mv "$deb.tmp" "$deb"
    log "built $deb ($(du -h "$deb" | cut -f1), installed size ${size} KiB)"
}

case ${1:-} in
    dist) build_dist ;;
    deb) build_debs ;;
    deb-in-root) build_deb_in_root "$2" "$3" ;;
    *)
        echo "usage: $0 dist|deb" >&2 # (deb-in-root: build_debs runs it in the root)
        exit 2
        ;;
esac
