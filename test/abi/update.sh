#!/bin/sh
# update.sh BUILD_DIR: regenerate test/abi/libr1.abi from a build (only for additive changes).
set -eu
build=$1
top=$(cd "$(dirname "$0")/../.." && pwd)
lib=$(ls "$build"/lib/libr1.so.*.*.* | head -n 1)
abidw --headers-dir "$top/include" --no-corpus-path --out-file "$top/test/abi/libr1.abi" "$lib"
echo "wrote test/abi/libr1.abi from $lib"
