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
# A bounded expert budget (twice the minimum the store names) streams experts: the table and the
# JSON report the wait for expert data and the router lookahead's prefetch recall and waste.
min=$("$R1" bench -m "$MODEL" -p 4 -n 0 --reps 1 --triad-mb 4 --expert-ram 1 2>&1 |
    sed -n 's/.*at least \([0-9]*\) bytes.*/\1/p')
[ -n "$min" ] || fail "no minimum expert budget in the budget error"
out=$("$R1" bench -m "$MODEL" -p 8 -n 8 -t 1 --reps 2 --triad-mb 4 --expert-ram $((2 * min))) ||
    fail "bounded run"
echo "$out" | grep -q "expert streaming, tg: waiting for expert data .* recall .* waste" ||
    fail "table lacks the expert streaming line"
if command -v python3 >/dev/null 2>&1; then
    "$R1" bench -m "$MODEL" -p 8 -n 8 -t 1 --reps 2 --triad-mb 4 --expert-ram $((2 * min)) --json |
        python3 -c 'import json,sys; t=json.load(sys.stdin)["expert_stream"]["tg"]; assert t["misses"]>0 and t["stall_ms_per_token"]>=0 and 0<=t["prefetch_recall"]<=1 and 0<=t["prefetch_waste"]<=1' ||
        fail "JSON lacks expert_stream or it is wrong"
    "$R1" bench -m "$MODEL" -p 8 -n 8 -t 1 --reps 2 --triad-mb 4 --expert-ram $((2 * min)) --json \
        --no-prefetch | python3 -c 'import json,sys; t=json.load(sys.stdin)["expert_stream"]["tg"]; assert t["misses"]>0 and t["prefetch_issued"]==0' ||
        fail "--no-prefetch still prefetches"
fi
# -d: pp and tg with tokens already in the cache (llama-bench -d), and the weight bytes of a
# decoded token by part, adding up to the total.
out=$("$R1" bench -m "$MODEL" -p 4 -n 4 -d 8 -t 1 --reps 1 --triad-mb 4) || fail "depth run"
for want in "pp4 @ d8" "tg4 @ d8" "depth: 8 tokens" "by part, MB: embedding row"; do
    echo "$out" | grep -q "$want" || fail "depth table lacks '$want'"
done
json=$("$R1" bench -m "$MODEL" -p 4 -n 4 --depth 8 -t 1 --reps 1 --triad-mb 4 --json) ||
    fail "depth json run"
if command -v python3 >/dev/null 2>&1; then
    echo "$json" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["depth"]==8 and d["tg"]["depth"]==8 and d["pp"]["depth"]==8 and d["tg"]["tokens"]==4; p=d["bytes_per_token_parts"]; assert abs(sum(p.values())-d["bytes_per_token"])<=len(p); assert p["embedding"]>0 and p["head"]>0 and p["attention"]>0 and p["experts"]==d["expert_bytes_per_token"]' \
        || fail "depth JSON does not parse or is wrong"
fi
"$R1" bench -m "$MODEL" -p 4 -n 4 -d 1000000 --reps 1 --triad-mb 4 2>&1 >/dev/null |
    grep -q "needs a context of 1000004 positions" || fail "-d beyond the model's context not reported"
"$R1" bench -m "$MODEL" --reps 0 >/dev/null 2>&1; [ $? -eq 2 ] || fail "--reps 0 accepted"
"$R1" bench -m "$MODEL" -p 0 -n 0 >/dev/null 2>&1; [ $? -eq 2 ] || fail "-p 0 -n 0 accepted"
"$R1" bench -m "$MODEL" --cache-gb x >/dev/null 2>&1; [ $? -eq 2 ] || fail "--cache-gb x accepted"
"$R1" bench >/dev/null 2>&1; [ $? -eq 2 ] || fail "no model accepted"
"$R1" bench -m /nonexistent.r1m -p 4 -n 0 --reps 1 --triad-mb 4 >/dev/null 2>&1
[ $? -eq 1 ] || fail "missing model not reported"
# --batch: N sequences decoding together (r1_session_step_many) beside tg's one, and the
# weight bytes per token they read together (each weight read once for all of them).
out=$("$R1" bench -m "$MODEL" -p 0 -n 4 -t 1 --reps 1 --triad-mb 4 --batch 3) || fail "batch run"
for want in "tg4 x3" "3 sequences together" "weights read per decoded token with 3 together"; do
    echo "$out" | grep -q "$want" || fail "batch table lacks '$want'"
done
if command -v python3 >/dev/null 2>&1; then
    "$R1" bench -m "$MODEL" -p 0 -n 4 -t 1 --reps 1 --triad-mb 4 --batch 3 --json |
        python3 -c 'import json,sys; d=json.load(sys.stdin); b=d["tg_batch"]; assert b["sequences"]==3 and b["tokens"]==4 and b["tps_median"]>0 and 0<b["bytes_per_token"]<d["bytes_per_token"]' ||
        fail "batch JSON lacks tg_batch or it is wrong"
fi
"$R1" bench -m "$MODEL" -n 0 -p 4 --batch 2 >/dev/null 2>&1; [ $? -eq 2 ] || fail "--batch with -n 0 accepted"
echo "bench CLI ok"
