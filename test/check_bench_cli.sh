#!/bin/sh
# check_bench_cli.sh R1 MODEL: `r1 bench` runs end to end on a tiny model (table and JSON) and
# rejects bad arguments. Speeds are not checked: tests never assert on time.
set -u
R1=$1
MODEL=$2
fail() { echo "FAIL: $*"; exit 1; }
out=$("$R1" bench -m "$MODEL" -p 8 -n 4 -t 1 --reps 2 --triad-mb 4 --profile) || fail "table run"
for want in "pp8" "tg4" "weights read per decoded token" "bandwidth floor" "profile tg" \
    "expert_loading" "load balance per layer"; do
    echo "$out" | grep -q "$want" || fail "table lacks '$want'"
done
json=$("$R1" bench -m "$MODEL" -p 8 -n 4 -t 2 --reps 1 --triad-mb 4 --json) || fail "json run"
for key in '"bandwidth_gbs"' '"bandwidth_best_before_gbs"' '"bandwidth_best_after_gbs"' '"bytes_per_token"' '"floor_fraction"' '"load_balance"' \
    '"profile_ms_per_token"' '"tps_median"'; do
    echo "$json" | grep -q "$key" || fail "JSON lacks $key"
done
if command -v python3 >/dev/null 2>&1; then
    echo "$json" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["tg"]["tokens"]==4 and d["bytes_per_token"]>0; assert d["bandwidth_best_gbs"]==max(d["bandwidth_best_before_gbs"],d["bandwidth_best_after_gbs"])' \
        || fail "JSON does not parse or is wrong"
fi
"$R1" bench -m "$MODEL" --reps 0 >/dev/null 2>&1; [ $? -eq 2 ] || fail "--reps 0 accepted"
"$R1" bench -m "$MODEL" -p 0 -n 0 >/dev/null 2>&1; [ $? -eq 2 ] || fail "-p 0 -n 0 accepted"
"$R1" bench -m "$MODEL" --cache-gb x >/dev/null 2>&1; [ $? -eq 2 ] || fail "--cache-gb x accepted"
"$R1" bench >/dev/null 2>&1; [ $? -eq 2 ] || fail "no model accepted"
"$R1" bench -m /nonexistent.r1m -p 4 -n 0 --reps 1 --triad-mb 4 >/dev/null 2>&1
[ $? -eq 1 ] || fail "missing model not reported"
echo "bench CLI ok"
