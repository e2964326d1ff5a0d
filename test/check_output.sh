#!/bin/sh
# check_output.sh EXPECT PROGRAM [ARGS...]: runs PROGRAM and passes only when it exits 0 and its
# standard output contains EXPECT, so an example that prints nothing (or the wrong thing) fails.
set -u
expect=$1
shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$@" >"$out"
rc=$?
cat "$out"
if [ "$rc" -ne 0 ]; then
    echo "FAIL: $1 exited with $rc"
    exit 1
fi
if ! grep -qF -- "$expect" "$out"; then
    echo "FAIL: the output lacks '$expect'"
    exit 1
fi
