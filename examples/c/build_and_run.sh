#!/bin/sh
# build_and_run.sh BUILD_DIR SRC MODEL [ARGS...]: install the built tree into a scratch prefix,
# compile SRC against it with nothing but `pkg-config --cflags --libs r1`, as a user's project
# would, then run it on MODEL with ARGS.
set -eu
build_dir=$1
src=$2
shift 2
cc=${CC:-cc}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
meson install -C "$build_dir" --destdir "$work/root" --no-rebuild >"$work/install.log" 2>&1 ||
    { cat "$work/install.log"; exit 1; }
option() {
    meson introspect "$build_dir" --buildoptions |
        python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]==sys.argv[1]))' "$1"
}
prefix=$(option prefix)
libdir=$(option libdir)
case $libdir in /*) ;; *) libdir=$prefix/$libdir ;; esac
root=$work/root
pcdir=$root$libdir/pkgconfig
[ -f "$pcdir/r1.pc" ] || { echo "r1.pc not installed in $pcdir"; exit 1; }
# The .pc file names the final prefix; point pkg-config at the staged copy.
flags=$(PKG_CONFIG_PATH=$pcdir PKG_CONFIG_SYSROOT_DIR=$root pkg-config --cflags --libs r1)
$cc -std=c11 -Wall -Wextra -Werror -o "$work/program" "$src" $flags
echo "built $(basename "$src") with: pkg-config --cflags --libs r1 -> $flags"
LD_LIBRARY_PATH=$root$libdir "$work/program" "$@"
