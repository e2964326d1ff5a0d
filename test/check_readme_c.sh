#!/bin/sh
# check_readme_c.sh README INCLUDE_DIR LIBR1 MODEL EXPECT [CFLAGS...]: compiles the C program of
# README.md's "Using it from C" section exactly as printed there, runs it on MODEL and requires
# EXPECT on its standard output and exit status 0; then runs it on a file that is not a model
# and requires a message and a failing exit status, so the README's example can neither rot nor
# fail silently.
set -eu
readme=$1 inc=$2 lib=$3 model=$4 expect=$5
shift 5
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
awk '/^## / { sec = ($0 == "## Using it from C") }
     sec && !on && /^```c$/ { on = 1; next }
     on && /^```$/ { exit }
     on { print }' "$readme" >"$work/app.c"
if ! grep -q 'int main' "$work/app.c"; then
    echo "FAIL: no C program under '## Using it from C' in $readme"
    exit 1
fi
${CC:-cc} -std=c11 -Wall -Wextra -Werror -pedantic "$@" -I"$inc" -o "$work/app" "$work/app.c" \
    "$lib" -Wl,-rpath,"$(dirname "$lib")"
"$work/app" "$model" >"$work/out" 2>"$work/err" || {
    echo "FAIL: the README's program exited with $? on $model:"
    cat "$work/out" "$work/err"
    exit 1
}
cat "$work/out"
grep -qF -- "$expect" "$work/out" || { echo "FAIL: its output lacks '$expect'"; exit 1; }
echo "not a model" >"$work/bad.r1m"
if "$work/app" "$work/bad.r1m" >"$work/out" 2>"$work/err"; then
    echo "FAIL: the README's program exited 0 on a file that is not a model"
    exit 1
fi
[ -s "$work/err" ] || { echo "FAIL: no message on stderr for a file that is not a model"; exit 1; }
echo "on a bad model file: $(cat "$work/err")"
