#!/bin/sh
# check_symbols.sh LIB MAP HEADER: libr1.so exports exactly the r1_* functions that r1.h declares
# with R1_API and lib/r1.map lists, each with a version node, and nothing else (no internal
# r1_module__verb names, no foreign symbols).
set -eu
lib=$1
map=$2
header=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nm -D --defined-only "$lib" | awk '{print $3}' | sort >"$tmp/exported"
grep -v -E '^r1_[a-z0-9]+(_[a-z0-9]+)*@@?R1_[0-9.]+$' "$tmp/exported" | grep -v -E '^R1_[0-9.]+$' \
    >"$tmp/bad" || true
if [ -s "$tmp/bad" ]; then
    echo "exported symbols that are not versioned public r1_* functions:"
    cat "$tmp/bad"
    exit 1
fi
sed -n 's/^[[:space:]]*\(r1_[a-z0-9_]*\);.*/\1/p' "$map" | sort >"$tmp/listed"
sed -n 's/^\(r1_[a-z0-9_]*\)@.*/\1/p' "$tmp/exported" | sort >"$tmp/got"
tr '\n' ' ' <"$header" | grep -o 'R1_API[^;(]*(' | sed 's/.*[^a-z0-9_]\(r1_[a-z0-9_]*\)[[:space:]]*($/\1/' |
    grep '^r1_' | sort >"$tmp/declared"
status=0
if ! cmp -s "$tmp/listed" "$tmp/got"; then
    echo "lib/r1.map and the exported symbols disagree:"
    diff "$tmp/listed" "$tmp/got" || true
    status=1
fi
if ! cmp -s "$tmp/declared" "$tmp/got"; then
    echo "include/r1.h (R1_API declarations) and the exported symbols disagree:"
    diff "$tmp/declared" "$tmp/got" || true
    status=1
fi
[ $status -eq 0 ] && echo "$(wc -l <"$tmp/got") r1_* symbols: declared in r1.h, listed in r1.map, exported with a version"
exit $status
