#!/bin/sh
# run.sh: install the built tree into a scratch prefix, then build and run consumer.c against it
# with nothing but `pkg-config --cflags --libs r1`, as a user's project would.
set -eu
build_dir=$1
src=$2
cc=${CC:-cc}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
meson install -C "$build_dir" --destdir "$work/root" --no-rebuild >"$work/install.log" 2>&1 ||
    { cat "$work/install.log"; exit 1; }
prefix=$(meson introspect "$build_dir" --buildoptions |
    python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"))')
libdir=$(meson introspect "$build_dir" --buildoptions |
    python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="libdir"))')
case $libdir in /*) ;; *) libdir=$prefix/$libdir ;; esac
root=$work/root
pcdir=$root$libdir/pkgconfig
[ -f "$pcdir/r1.pc" ] || { echo "r1.pc not installed in $pcdir"; exit 1; }
[ -f "$root$prefix/include/r1.h" ] || { echo "r1.h not installed"; exit 1; }
# A URL in r1.pc must lead somewhere: better none (it is optional) than a placeholder domain.
if grep -E '^URL:' "$pcdir/r1.pc" | grep -qiE '\.invalid|\.test([/:]|$)|example\.(com|org|net)'; then
    echo "r1.pc names a placeholder URL: $(grep -E '^URL:' "$pcdir/r1.pc")"
    exit 1
fi
# The .pc file names the final prefix; point pkg-config at the staged copy.
flags=$(PKG_CONFIG_PATH=$pcdir PKG_CONFIG_SYSROOT_DIR=$root pkg-config --cflags --libs r1)
$cc -std=c99 -Wall -Werror -o "$work/consumer" "$src" $flags
LD_LIBRARY_PATH=$root$libdir "$work/consumer"
