#!/bin/sh
# check_symbols.sh: libr1.so exports exactly the r1_* functions listed in lib/r1.map, each with
# a version node, and nothing else.
set -eu
lib=$1
map=$2
exported=$(nm -D --defined-only "$lib" | awk '{print $3}' | sort)
bad=$(printf '%s\n' "$exported" | grep -v '^r1_[a-z0-9_]*@@\?R1_[0-9.]*$' | grep -v '^R1_[0-9.]*$' || true)
if [ -n "$bad" ]; then
    echo "exported symbols that are not versioned r1_* functions:"
    printf '%s\n' "$bad"
    exit 1
fi
listed=$(sed -n 's/^[[:space:]]*\(r1_[a-z0-9_]*\);.*/\1/p' "$map" | sort)
got=$(printf '%s\n' "$exported" | sed -n 's/^\(r1_[a-z0-9_]*\)@.*/\1/p' | sort)
if [ "$listed" != "$got" ]; then
    echo "lib/r1.map and the library disagree:"
    echo "in lib/r1.map:"; printf '%s\n' "$listed"
    echo "exported:"; printf '%s\n' "$got"
    exit 1
fi
echo "$(printf '%s\n' "$got" | wc -l) r1_* symbols, all versioned, match lib/r1.map"
