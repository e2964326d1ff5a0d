#!/bin/sh
# check_abi.sh: compare the built libr1 against the committed ABI baseline (libabigail).
# Any difference fails: an incompatible change must never happen without a SONAME bump, and a
# compatible addition must regenerate the baseline (test/abi/update.sh) in the same commit.
set -u
lib=$1
srcdir=$2
baseline=$srcdir/test/abi/libr1.abi
command -v abidiff >/dev/null || { echo "abidiff not installed (Debian: abigail-tools)"; exit 77; }
abidiff --headers-dir2 "$srcdir/include" "$baseline" "$lib"
rc=$?
if [ $rc -eq 0 ]; then
    echo "ABI matches test/abi/libr1.abi"
    exit 0
fi
[ $((rc & 8)) -ne 0 ] && echo "INCOMPATIBLE ABI change: needs a major SONAME bump and docs/CHANGELOG.md"
[ $((rc & 8)) -eq 0 ] && [ $((rc & 4)) -ne 0 ] &&
    echo "compatible ABI change: regenerate the baseline with test/abi/update.sh BUILD_DIR and add the new symbols to a new version node in lib/r1.map"
[ $((rc & 3)) -ne 0 ] && echo "abidiff failed to run (exit $rc)"
exit 1
