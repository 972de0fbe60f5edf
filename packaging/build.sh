#!/usr/bin/env bash
# Release artifacts; `make dist` and `make deb` call this.
#
#   packaging/build.sh dist   wheel and sdist of hostsyncd in dist/ (python -m build)
#   packaging/build.sh deb    dist/hostsyncd_<version>_<arch>.deb (needs the wheel)
#
# Each step records a hash of its inputs under build/ and does nothing when the artifact
# is there and its inputs have not changed. The .deb's third-party wheels are kept in
# build/wheelhouse/, by lock file and interpreter, so a rebuild compiles nothing.
#
# The .deb holds a venv at /opt/hostsyncd, made from Debian's /usr/bin/python3. A venv is
# not relocatable, so it is built in a staging tree (build/deb/root/opt/hostsyncd), then
# every place that names the staging path (script shebangs, pyvenv.cfg, activate scripts)
# is rewritten to /opt/hostsyncd, and the bytecode is compiled with /opt/hostsyncd as its
# source path. The build fails if the staging path is left anywhere in the tree. Nothing
# is written outside the work tree: the build machine's /opt is never touched.
set -euo pipefail
umask 022
cd "$(dirname "$0")/.."
top=$PWD

SYSTEM_PYTHON=/usr/bin/python3 # what the package runs on; see Depends in control.in
PY=${PY:-.venv/bin/python}     # the project venv: runs python -m build

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

build_deb() {
    [ -x "$SYSTEM_PYTHON" ] || die "$SYSTEM_PYTHON not found (apt-get install python3)"
    local arch pyver deb hash
    arch=$(dpkg --print-architecture)
    pyver=$("$SYSTEM_PYTHON" -c 'import platform; print(platform.python_version())')
    case $pyver in
        3.11.*) ;;
        *) die "$SYSTEM_PYTHON is Python $pyver; the package is made for 3.11 (Debian 12)" ;;
    esac
    deb=dist/hostsyncd_${version}_${arch}.deb
    [ -f "$wheel" ] || die "$wheel not found: run 'make dist' first"
    check_lock

    hash=$(inputs_hash "$wheel" packaging systemd config.example.toml README.md \
        -- "$arch" "$pyver" "${DEB_MAINTAINER:-}")
    if up_to_date build/deb.inputs "$hash" "$deb"; then
        log "$deb is up to date"
        return
    fi
    rm -f build/deb.inputs

    local stage=$top/build/deb/root
    local venv=$stage/opt/hostsyncd
    rm -rf build/deb
    mkdir -p "$stage"

    # The venv has no pip of its own: Debian's pip wheel (python3-pip-whl, which
    # python3-venv pulls in) runs straight from the archive, inside the venv's interpreter.
    local pipwhl
    pipwhl=$(find /usr/share/python-wheels -name 'pip-*.whl' 2>/dev/null | sort -V | tail -n1)
    [ -n "$pipwhl" ] || die "Debian's pip wheel is missing (apt-get install python3-venv)"
    "$SYSTEM_PYTHON" -m venv --without-pip "$venv"
    local pip=("$venv/bin/python" "$pipwhl/pip" --disable-pip-version-check -q)

    # Third-party wheels, built once per lock file and interpreter (systemd-python compiles
    # against libsystemd-dev and python3-dev).
    local wheelhouse
    wheelhouse=build/wheelhouse/$(inputs_hash packaging/requirements.lock -- "$arch" "$pyver")
    if [ ! -f "$wheelhouse/.complete" ]; then
        log "building the dependency wheels into $wheelhouse"
        rm -rf "$wheelhouse"
        "${pip[@]}" wheel --no-deps -r packaging/requirements.lock -w "$wheelhouse"
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
    install -D -m 0644 systemd/hostsyncd.service "$stage/lib/systemd/system/hostsyncd.service"
    install -D -m 0600 config.example.toml "$stage/etc/hostsyncd/config.toml"
    mkdir -p "$stage/usr/bin"
    ln -s /opt/hostsyncd/bin/hostsyncd "$stage/usr/bin/hostsyncd"
    install -D -m 0644 packaging/debian/copyright "$stage/usr/share/doc/hostsyncd/copyright"
    gzip -9n <README.md >"$stage/usr/share/doc/hostsyncd/README.md.gz"

    find "$stage" -type d -exec chmod 0755 {} +
    find "$stage" -type f -perm /111 -exec chmod 0755 {} +
    find "$stage" -type f ! -perm /111 -exec chmod 0644 {} +
    chmod 0600 "$stage/etc/hostsyncd/config.toml"  # it may hold an etcd password

    if grep -rlF "$stage" "$stage" >build/deb/leftover-paths.txt; then
        head build/deb/leftover-paths.txt >&2
        die "the staging path $stage is still named in the files above"
    fi

    # Shared-library dependencies of the compiled modules, as dpkg-shlibdeps works them out.
    local sofiles=() shlibs
    mapfile -t sofiles < <(find "$stage" -type f -name '*.so*' | LC_ALL=C sort)
    mkdir -p build/deb/shlibdeps/debian
    printf 'Source: hostsyncd\n\nPackage: hostsyncd\nArchitecture: any\n' \
        >build/deb/shlibdeps/debian/control
    (cd build/deb/shlibdeps && dpkg-shlibdeps -O "${sofiles[@]/#/-e}") \
        >build/deb/shlibdeps.out 2>build/deb/shlibdeps.err ||
        { cat build/deb/shlibdeps.err >&2; die "dpkg-shlibdeps failed"; }
    shlibs=$(sed -n 's/^shlibs:Depends=//p' build/deb/shlibdeps.out)
    case $shlibs in
        *libsystemd0*) ;;
        *) die "dpkg-shlibdeps found no libsystemd0 dependency (got '$shlibs')" ;;
    esac

    # DEBIAN/
    local debian=$stage/DEBIAN size
    mkdir -p "$debian"
    size=$(du -sk --apparent-size --exclude=DEBIAN "$stage" | cut -f1)
    sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" \
        -e "s|@MAINTAINER@|${DEB_MAINTAINER:-hostsyncd maintainers <root@localhost>}|" \
        -e "s|@INSTALLED_SIZE@|$size|" -e "s|@SHLIBS_DEPENDS@|$shlibs|" \
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
    echo "$hash" >build/deb.inputs
    log "built $deb ($(du -h "$deb" | cut -f1), installed size ${size} KiB)"
}

case ${1:-} in
    dist) build_dist ;;
    deb) build_deb ;;
    *)
        echo "usage: $0 dist|deb" >&2
        exit 2
        ;;
esac
