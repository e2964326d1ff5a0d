#!/bin/sh
# check_cli_signals.sh R1 PTY_HELPER HF_DIR: Ctrl-C (SIGINT) in the middle of `r1 run` and
# `r1 convert` ends them cleanly: the dimmed reasoning's terminal attributes are reset, the
# conversion's temporary file is removed, and the exit status is 130. PTY_HELPER
# (test/cli_pty.py) holds the program in a blocked terminal write while the signal arrives, so
# the signal lands mid-work every time. Skips (77) without python3 or a pseudo-terminal.
set -u
R1=$1
PTY=$2
SRC=$3
command -v python3 >/dev/null 2>&1 || {
    echo "SKIP: python3 is needed to drive a pseudo-terminal"
    exit 77
}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() {
    echo "FAIL: $*"
    exit 1
}

# r1 run streams the reasoning dimmed (ESC[2m) on a terminal; a Ctrl-C used to kill it there,
# leaving the user's terminal dim
rc=$(python3 "$PTY" INT "$T/run.out" 1 -- "$R1" run --show-thinking -p "What is 347 + 285?")
[ $? -eq 77 ] && {
    echo "SKIP: no pseudo-terminal"
    exit 77
}
[ "$rc" = 130 ] || fail "run after Ctrl-C exits '$rc', not 130"
python3 - "$T/run.out" <<'EOF' || fail "run after Ctrl-C leaves the terminal dim"
import sys
out = open(sys.argv[1], "rb").read()
dim, reset = out.rfind(b"\x1b[2m"), out.rfind(b"\x1b[0m")
print("run's output:", out)
sys.exit(0 if dim >= 0 and reset > dim else 1)
EOF

# r1 convert writes OUT.tmp-XXXXXX and renames it at the end; a Ctrl-C used to kill it with the
# temporary file left behind
mkdir "$T/conv"
rc=$(python3 "$PTY" INT "$T/conv.out" 2 -- "$R1" convert "$SRC" "$T/conv/out.r1m")
[ "$rc" = 130 ] || fail "convert after Ctrl-C exits '$rc', not 130: $(cat "$T/conv.out")"
grep -q "cancelled" "$T/conv.out" || fail "convert after Ctrl-C says: $(cat "$T/conv.out")"
left=$(ls -A "$T/conv")
[ -z "$left" ] || fail "convert after Ctrl-C left: $left"
# a pre-existing output survives a cancelled conversion untouched
printf 'previous model' >"$T/conv/out.r1m"
rc=$(python3 "$PTY" TERM "$T/conv.out" 2 -- "$R1" convert "$SRC" "$T/conv/out.r1m")
[ "$rc" = 143 ] || fail "convert after SIGTERM exits '$rc', not 143"
[ "$(cat "$T/conv/out.r1m")" = "previous model" ] || fail "a cancelled convert damaged OUT"
[ "$(ls -A "$T/conv")" = out.r1m ] || fail "convert after SIGTERM left: $(ls -A "$T/conv")"
echo "r1 CLI signals ok"
