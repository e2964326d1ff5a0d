#!/bin/sh
# check_bench_tools.sh SRC_DIR BUILD_DIR R1 MODEL: the beyond-RAM tools work end to end on tiny
# inputs: drop_file_cache evicts a file (mincore says so), ballast holds and pins what it is
# asked for and leaves on SIGTERM, project_r1.py does its arithmetic, beyond_ram.py runs a round
# (libr1 only, a small ballast) and make_v3_slice.py writes a V3-shaped FP8 checkpoint that
# r1 converts to q4_0 and benches. No speed is checked.
set -u
SRC=$1
BUILD=$2
R1=$3
MODEL=$4
BALLAST=$BUILD/ballast
DROP=$BUILD/drop_file_cache
TMP=$BUILD/check_bench_tools.tmp
fail() { echo "FAIL: $*"; exit 1; }
rm -rf "$TMP"
mkdir -p "$TMP" || fail "mkdir $TMP"
trap 'rm -rf "$TMP"' EXIT
PY=""
for p in "${PYTHON:-}" python3 /usr/bin/python3; do
    [ -n "$p" ] && "$p" -c 'import sys; assert sys.version_info >= (3, 9)' 2>/dev/null && {
        PY=$p
        break
    }
done
[ -n "$PY" ] || { echo "SKIP: no python3 >= 3.9"; exit 77; }

# ---- drop_file_cache: resident pages before, none after --------------------------------------
f=$TMP/cached.bin
dd if=/dev/urandom of="$f" bs=1M count=4 status=none || fail "dd"
cat "$f" >/dev/null
out=$("$DROP" --report-only "$f") || fail "drop_file_cache --report-only: $out"
echo "$out" | grep -q "resident [1-9][0-9]* of 1024 pages" || fail "not resident after a read: $out"
out=$("$DROP" "$f")
rc=$?
if [ $rc -ne 0 ] && stat -f -c %T "$f" | grep -q tmpfs; then
    echo "note: $TMP is on tmpfs, where posix_fadvise cannot drop pages; not checked"
else
    [ $rc -eq 0 ] || fail "drop_file_cache: $out"
    echo "$out" | grep -q "resident before [1-9][0-9]* of 1024 pages.*after 0 " ||
        fail "pages still resident: $out"
fi
"$DROP" >/dev/null 2>&1; [ $? -eq 2 ] || fail "drop_file_cache without files accepted"
"$DROP" "$TMP/missing" >/dev/null 2>&1; [ $? -eq 1 ] || fail "a missing file not reported"

# ---- ballast: holds 64 MiB, pinned, first for the OOM killer, gone on SIGTERM --------------------
"$BALLAST" --bytes 64M >"$TMP/ballast.out" 2>&1 &
pid=$!
i=0
while ! grep -q "ballast: ready" "$TMP/ballast.out" && [ $i -lt 600 ]; do
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
    i=$((i + 1))
done
grep -q "ballast: ready: held 67108864 bytes" "$TMP/ballast.out" ||
    { kill $pid 2>/dev/null; fail "ballast: $(cat "$TMP/ballast.out")"; }
rss=$(awk '/^VmRSS:/ {print $2}' /proc/$pid/status)
[ "$rss" -ge 65536 ] || { kill $pid; fail "ballast VmRSS $rss kB < 64 MiB"; }
[ "$(cat /proc/$pid/oom_score_adj)" = 1000 ] || { kill $pid; fail "oom_score_adj not 1000"; }
grep -q "ballast: mlock: " "$TMP/ballast.out" || { kill $pid; fail "mlock outcome not reported"; }
kill -TERM $pid
wait $pid || fail "ballast did not exit cleanly on SIGTERM"
"$BALLAST" --leave 1M >/dev/null 2>&1; [ $? -eq 2 ] || fail "ballast --leave 1M accepted"
"$BALLAST" --bytes x >/dev/null 2>&1; [ $? -eq 2 ] || fail "ballast --bytes x accepted"
"$BALLAST" >/dev/null 2>&1; [ $? -eq 2 ] || fail "ballast without a size accepted"

# ---- project_r1.py: the arithmetic on a fixed profile ------------------------------------------
# 61 x 1 (attention 3 ms / 3 layers) + 3 x 2 (dense) + 58 x (8 + 1 + 1) / 2 + 0.1 x 129280 / 1024
# + 0.375 = 61 + 6 + 290 + 12.625 + 0.375 = 370 ms; all experts cached: 1000 / 370 = 2.703 tok/s.
cat >"$TMP/slice.json" <<'EOF'
{"model": "fixture", "expert_dtype": "q4_0", "threads": 2, "tg": {"tps_median": 1.0},
 "bandwidth_best_gbs": 25.0, "bytes_per_token": 1, "expert_bytes_per_token": 1,
 "profile_ms_per_token": {"tg": {"attention": 3.0, "router": 1.0, "experts": 8.0, "shared": 1.0,
  "dense_mlp": 2.0, "head": 0.1, "expert_loading": 0.0, "other": 0.375, "total": 15.475}}}
EOF
out=$("$PY" "$SRC/project_r1.py" "$TMP/slice.json" --drive-bw 1e9 --hit-rate 1.0) ||
    fail "project_r1.py: $out"
for want in "= 370.0 ms" "blobs of 24.77 MB" "= 2.703 tok/s" "NVMe 7 GB/s" "KV cache: 576"; do
    echo "$out" | grep -q "$want" || fail "project_r1.py output lacks '$want': $out"
done
# uniform routing on 64 GiB: every miss costs 24.77 MB at 1 GB/s, so io dominates
echo "$out" | grep "uniform routing" >/dev/null || fail "no uniform-routing projection"
# with bytes by part, R1's head (129280 x 7168 q4_0 = 521.257 MB) streams at the slice's expert
# rate, 9e6 B / (8 + 1) ms: 521.257 ms, so 61 + 6 + 290 + 521.257 + 0.375 = 878.6 ms
sed 's/"bandwidth_best_gbs"/"bytes_per_token_parts": {"experts": 8e6, "shared": 1e6}, &/' \
    "$TMP/slice.json" >"$TMP/slice-parts.json"
out=$("$PY" "$SRC/project_r1.py" "$TMP/slice-parts.json" --drive-bw 1e9) ||
    fail "project_r1.py with parts: $out"
echo "$out" | grep -q "= 878.6 ms" || fail "project_r1.py head by bytes: $out"

# ---- beyond_ram.py: one round, libr1 only, a ballast of 128 MiB --------------------------------
out=$("$PY" "$SRC/beyond_ram.py" --r1 "$R1" --r1m "$MODEL" --no-llama --ballast-bytes 128M \
    --rounds 1 -n 2 --reps 1 --bw-mb 16 --tools "$BUILD" --ws-depth 64 --ws-n 2 --ws-reps 1 \
    --json-out "$TMP/beyond.json" 2>&1) ||
    fail "beyond_ram.py: $out"
for want in "ballast: ready" "drive: 1 x 16 MiB O_DIRECT reads" "libr1 (ballast): tg2" \
    "libr1 (unbounded): tg2" "libr1 under ballast:  " "libr1 / IO floor" "peak RSS GB" \
    "libr1 (ws-bounded): tg2" "libr1 (ws-unbounded): tg2" "budget >= working set" \
    "bounded / unbounded (same round)"; do
    echo "$out" | grep -q "$want" || fail "beyond_ram.py output lacks '$want': $out"
done
echo "$out" | grep "page cache: " | grep -v "after 0 " && fail "page cache not dropped: $out"
"$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); r = d["rounds"][0]["runs"]
assert [x["label"] for x in r] == ["ballast", "unbounded", "ws-bounded", "ws-unbounded"], r
assert all(x["rc"] == 0 and x["tps"] > 0 and x["peak_rss"] > 0 for x in r), r
ws = {x["label"]: x for x in r}
# the bounded run holds every expert; the untimed prefill left nothing to load in timed tokens
assert ws["ws-bounded"]["budget"] == d["ws_model_info"]["expert_bytes"], ws["ws-bounded"]
assert ws["ws-bounded"]["timed_misses"] == 0 and ws["ws-unbounded"]["timed_misses"] == 0, ws
assert len(d["summary"]["ws_bounded_over_unbounded"]) == 1, d["summary"]' \
    "$TMP/beyond.json" || fail "beyond_ram.py JSON"
# the working-set comparison alone (no ballast, no llama.cpp), two rounds in swapped order
out=$("$PY" "$SRC/beyond_ram.py" --r1 "$R1" --r1m "$MODEL" --only-working-set --rounds 2 \
    --bw-mb 16 --tools "$BUILD" --ws-depth 64 --ws-n 2 --ws-reps 1 \
    --json-out "$TMP/ws.json" 2>&1) || fail "beyond_ram.py --only-working-set: $out"
echo "$out" | grep -q "ballast: ready" && fail "--only-working-set ran a ballast: $out"
"$PY" -c 'import json, sys; d = json.load(open(sys.argv[1]))
labels = [[x["label"] for x in rnd["runs"]] for rnd in d["rounds"]]
assert labels == [["ws-bounded", "ws-unbounded"], ["ws-unbounded", "ws-bounded"]], labels
assert len(d["summary"]["ws_bounded_over_unbounded"]) == 2, d["summary"]' \
    "$TMP/ws.json" || fail "beyond_ram.py --only-working-set JSON"

# ---- chat_turns.py (issue 19): with one session a turn evaluates its new tokens only, fresh
# every turn the whole conversation (columns: turn, new tok, ms, ms/tok, position, conv tok)
# It drives libr1 through the Python binding, which a sanitizer build's library cannot be loaded
# into (its runtime must come first): that build checks the rest.
if "$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import r1; r1.version()' "$SRC/../../examples/python" \
    2>&1 | grep -q "runtime does not come first"; then
    echo "note: libr1 is built with a sanitizer; chat_turns.py not checked"
else
    out=$("$PY" "$SRC/chat_turns.py" "$MODEL" --turns 3 --max-tokens 4 2>&1) ||
        fail "chat_turns.py: $out"
    echo "$out" | awk '$1 ~ /^[0-9]+$/ { n++; if ($1 > 1 && $2 >= $6) bad = 1 }
        END { exit !(n == 3 && !bad) }' || fail "chat_turns.py reused no prefix: $out"
    out=$("$PY" "$SRC/chat_turns.py" "$MODEL" --turns 3 --max-tokens 4 --fresh 2>&1) ||
        fail "chat_turns.py --fresh: $out"
    echo "$out" | awk '$1 ~ /^[0-9]+$/ { n++; if ($2 != $6) bad = 1 } END { exit !(n == 3 && !bad) }' ||
        fail "chat_turns.py --fresh: $out"
fi

# ---- make_v3_slice.py: V3's shapes by default; a shrunken slice converts and runs ----------------
NPY=""
for p in "${PYTHON:-}" /usr/bin/python3 python3; do
    [ -n "$p" ] && "$p" -c 'import numpy' 2>/dev/null && { NPY=$p; break; }
done
if [ -z "$NPY" ]; then
    echo "note: no python3 with numpy: make_v3_slice.py not checked"
    echo "bench tools ok"
    exit 0
fi
REF=$SRC/../ref
"$NPY" - "$REF" <<'EOF' || fail "make_v3_slice.py default shapes"
import sys
sys.path.insert(0, sys.argv[1])
import make_v3_slice as m
c = m.CONFIG
want = dict(hidden_size=7168, n_routed_experts=256, moe_intermediate_size=2048,
            num_experts_per_tok=8, n_shared_experts=1, q_lora_rank=1536, kv_lora_rank=512,
            num_attention_heads=128, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
            num_hidden_layers=3, first_k_dense_replace=1, intermediate_size=18432)
assert all(c[k] == v for k, v in want.items()), {k: c[k] for k in want}
t = m.tensor_list(c)
fp8 = sum(1 for _, _, k in t if k == "fp8")
assert fp8 == 3 * 5 + 3 + 2 * (3 * 256 + 3), fp8
total = sum(m.nbytes(s, k) for _, s, k in t)
assert 23.0e9 < total < 24.5e9, total
EOF
"$NPY" "$REF/make_v3_slice.py" "$TMP/slice-hf" --vocab 512 --set hidden_size=256 \
    --set intermediate_size=512 --set moe_intermediate_size=128 --set n_routed_experts=16 \
    --set num_experts_per_tok=4 --set n_group=4 --set topk_group=2 --set num_attention_heads=4 \
    --set num_key_value_heads=4 --set q_lora_rank=128 --set kv_lora_rank=64 \
    --shard-gb 0.002 >"$TMP/slice.log" || fail "make_v3_slice.py: $(cat "$TMP/slice.log")"
"$NPY" - "$TMP/slice-hf" <<'EOF' || fail "the slice checkpoint"
import json, os, struct, sys
import numpy as np
d = sys.argv[1]
idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))["weight_map"]
assert len(set(idx.values())) > 1, "expected several shards"
n_fp8 = 0
for shard in sorted(set(idx.values())):
    with open(os.path.join(d, shard), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        base = 8 + n
        for name, t in h.items():
            if name == "__metadata__":
                continue
            if t["dtype"] == "F8_E4M3":
                n_fp8 += 1
                s = h.get(name + "_scale_inv") or None
                rows, cols = t["shape"]
                if s is None:  # the scale is in another shard
                    continue
                assert s["dtype"] == "F32" and s["shape"] == [-(-rows // 128), -(-cols // 128)]
                f.seek(base + t["data_offsets"][0])
                codes = np.frombuffer(f.read(rows * cols), np.uint8)
                assert not np.any((codes & 0x7F) == 0x7F), name + ": NaN codes"
                assert np.any(codes >= 0x80) and np.any((codes & 0x7F) >= 0x70), name
cfg = json.load(open(os.path.join(d, "config.json")))
assert cfg["quantization_config"]["weight_block_size"] == [128, 128]
assert cfg["num_nextn_predict_layers"] == 0 and cfg["vocab_size"] == 512
assert n_fp8 == 3 * 5 + 3 + 2 * (3 * 16 + 3), n_fp8
EOF
"$R1" convert "$TMP/slice-hf" "$TMP/slice-q4_0.r1m" --quant q4_0 --threads 2 >/dev/null ||
    fail "r1 convert of the slice"
"$R1" bench -m "$TMP/slice-q4_0.r1m" -p 0 -n 2 -t 1 --reps 1 --triad-mb 1 --json \
    >"$TMP/slice-bench.json" || fail "r1 bench on the slice"
out=$("$PY" "$SRC/project_r1.py" "$TMP/slice-bench.json" --slice-vocab 512 --drive-bw 5e8) ||
    fail "project_r1.py on the slice: $out"
echo "$out" | grep -q "compute per token of R1: 61 x" || fail "project_r1.py: $out"
echo "bench tools ok"
