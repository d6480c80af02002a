#!/usr/bin/env bash
# Builds the mapstate C library (release) and installs it, as LMDB's
# `make install` does:
#
#   PREFIX/lib/libmapstate.so.X.Y.Z    the shared library (SONAME libmapstate.so.X)
#   PREFIX/lib/libmapstate.so.X        -> libmapstate.so.X.Y.Z (what programs load)
#   PREFIX/lib/libmapstate.so          -> libmapstate.so.X (what -lmapstate links)
#   PREFIX/lib/libmapstate.a           the static library
#   PREFIX/include/mapstate.h          the header
#   PREFIX/lib/pkgconfig/mapstate.pc   for `pkg-config --cflags --libs mapstate`
#
# Usage: scripts/install-c.sh [--prefix DIR]   (default /usr/local)
# DESTDIR, if set, is put before every installed path (for packaging); the
# .pc file still names PREFIX. CARGO picks the cargo to build with.
set -euo pipefail

prefix=/usr/local
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || { echo "install-c.sh: --prefix needs a directory" >&2; exit 2; }
                  prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#--prefix=}; shift ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install-c.sh: unknown argument '$1' (usage: install-c.sh [--prefix DIR])" >&2; exit 2 ;;
    esac
done
case "$prefix" in
    /*) ;;
    *) echo "install-c.sh: the prefix must be an absolute path (the .pc file names it): $prefix" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."
crate=crates/mapstate-capi
cargo=${CARGO:-cargo}

"$cargo" build --release --lib -p mapstate-capi
# The package's version and the target directory (CARGO_TARGET_DIR or
# the workspace's), from cargo itself.
id=$("$cargo" pkgid -p mapstate-capi)
version=${id##*[#@]}
target=$("$cargo" metadata --format-version 1 --no-deps |
         sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target" ] || { echo "install-c.sh: cargo metadata named no target directory" >&2; exit 1; }
major=${version%%.*}
built=$target/release

lib=${DESTDIR:-}$prefix/lib
inc=${DESTDIR:-}$prefix/include
install -d "$lib/pkgconfig" "$inc"
install -m 0755 "$built/libmapstate.so" "$lib/libmapstate.so.$version"
ln -sfn "libmapstate.so.$version" "$lib/libmapstate.so.$major"
ln -sfn "libmapstate.so.$major" "$lib/libmapstate.so"
install -m 0644 "$built/libmapstate.a" "$lib/libmapstate.a"
install -m 0644 "$crate/include/mapstate.h" "$inc/mapstate.h"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" "$crate/mapstate.pc.in" \
    > "$lib/pkgconfig/mapstate.pc"
chmod 0644 "$lib/pkgconfig/mapstate.pc"

echo "installed mapstate $version (libmapstate.so.$major) into ${DESTDIR:-}$prefix"
if [ -z "${DESTDIR:-}" ]; then
    echo "  build: gcc app.c \$(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs mapstate)"
fi
