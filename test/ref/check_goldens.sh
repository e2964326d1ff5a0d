#!/bin/sh
# check_goldens.sh: the committed tiny checkpoints and golden logits are exactly what the
# reference generator produces, and the reference passes its own self-checks.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-/usr/bin/python3}
"$py" -c 'import numpy' 2>/dev/null || { echo "python3-numpy is not installed"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" "$here/test_reference.py"
"$py" "$here/make_goldens.py" --data "$tmp" >/dev/null
for m in tiny-v3 tiny-v2lite; do
    diff -r "$here/../data/$m" "$tmp/$m" >/dev/null ||
        { echo "test/data/$m differs from what test/ref/make_goldens.py generates"; diff -rq "$here/../data/$m" "$tmp/$m"; exit 1; }
done
"$py" "$here/reference_dense.py" >/dev/null
"$py" "$here/make_dense.py" --data "$tmp" >/dev/null
for m in tiny-qwen2 tiny-llama; do
    diff -r "$here/../data/$m" "$tmp/$m" >/dev/null ||
        { echo "test/data/$m differs from what test/ref/make_dense.py generates"; diff -rq "$here/../data/$m" "$tmp/$m"; exit 1; }
done
echo "goldens regenerate byte-identically"
