#!/usr/bin/env python3
"""project_r1.py: DeepSeek-R1 671B decode speed projected from a measured "V3 slice".

The slice (test/ref/make_v3_slice.py: V3's exact layer shapes, 1 dense + 2 MoE layers, converted
to q4_0) is run with `r1 bench --json` (experts in memory after the warm-up); its per-token
milliseconds per operation class, divided by the slice's layers, give the cost of one attention,
one dense MLP and one MoE layer of the real model. The full model has 61 layers (3 dense +
58 MoE); its weight bytes follow from V3's shapes and the quantisation. On a machine with RAM
bytes of memory, the expert budget is what remains after the OS reserve, the dense weights and
the KV cache; with uniform routing (random weights, the worst case) a per-layer cache that holds
a fraction f of a layer's experts hits with probability f, so each token reads
58 x 8 x (1 - f) experts from the drive (or use --hit-rate for a measured, skewed workload).
Printed for each drive:
  compute  = 61 x attention + 3 x dense MLP + 58 x MoE layer + head + other   (ms per token)
  io       = misses per token x stored bytes per expert / drive bandwidth
  tok/s    = 1000 / max(compute, io) when reads overlap compute (the asynchronous expert
             supply of issue 17), and 1000 / (compute + io) when they do not (the bound below).

Usage:
    r1 bench -m v3slice-q4_0.r1m -p 0 -n 32 -t 2 --reps 3 --json > slice.json
    python3 test/bench/project_r1.py slice.json [--drive-bw 661e6 | --measure-drive FILE]
        [--ram 64GiB] [--os-reserve 4GiB] [--context 4096] [--hit-rate H] [--json-out F]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

GiB = 1 << 30

# DeepSeek-V3 / R1 (docs/model.md §1.1).
V3 = dict(hidden=7168, layers=61, dense_layers=3, moe_layers=58, experts=256, active=8,
          shared=1, moe_inter=2048, dense_inter=18432, heads=128, q_lora=1536, kv_lora=512,
          qk_nope=128, qk_rope=64, v_head=128, vocab=129280)

# Bytes per weight of the stored types (block formats: 32 weights + an f16 scale).
BYTES_PER_WEIGHT = {"q4_0": 18 / 32, "q8_0": 34 / 32, "bf16": 2.0, "f16": 2.0, "f32": 4.0,
                    "fp8_e4m3": 1.0}


def parse_bytes(s):
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([kKmMgGtT]?)(i?)B?\s*", s)
    if not m:
        raise argparse.ArgumentTypeError("not a size: %r (e.g. 64GiB, 64GB, 6.9e10)" % s)
    unit = m.group(2).lower()
    base = 1024 if m.group(3) else 1000
    return int(float(m.group(1)) * base ** " kmgt".index(unit or " "))


def v3_weights(m):
    """Weights per part of the full model (counts, not bytes)."""
    D = m["hidden"]
    att = (m["q_lora"] * D + m["heads"] * (m["qk_nope"] + m["qk_rope"]) * m["q_lora"] +
           (m["kv_lora"] + m["qk_rope"]) * D + m["heads"] * (m["qk_nope"] + m["v_head"]) *
           m["kv_lora"] + D * m["heads"] * m["v_head"])
    return dict(attention=att, dense_mlp=3 * m["dense_inter"] * D,
                expert=3 * m["moe_inter"] * D, shared=3 * m["shared"] * m["moe_inter"] * D,
                router=m["experts"] * D, head=m["vocab"] * D, embed_row=D)


def drive_bandwidth(path, mb=2048):
    """O_DIRECT sequential 16 MiB reads of path (dd iflag=direct), bytes/s."""
    blocks = os.path.getsize(path) // (16 << 20)
    count = max(1, min(mb * 10**6 // (16 << 20), blocks))
    t0 = time.monotonic()
    subprocess.run(["dd", "if=" + path, "of=/dev/null", "bs=16M", "count=%d" % count,
                    "skip=%d" % ((blocks - count) // 2), "iflag=direct", "status=none"],
                   check=True)
    return count * (16 << 20) / (time.monotonic() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 1)[1])
    ap.add_argument("slice_json", help="r1 bench --json output of the V3 slice (- for stdin)")
    ap.add_argument("--slice-dense", type=int, default=1, help="dense layers of the slice (1)")
    ap.add_argument("--slice-moe", type=int, default=2, help="MoE layers of the slice (2)")
    ap.add_argument("--slice-vocab", type=int, default=1024, help="the slice's vocab_size (1024)")
    ap.add_argument("--ram", type=parse_bytes, default=64 * GiB, help="machine memory (64GiB)")
    ap.add_argument("--os-reserve", type=parse_bytes, default=4 * GiB,
                    help="memory left to the OS and other programs (4GiB)")
    ap.add_argument("--context", type=int, default=4096, help="KV cache tokens (4096)")
    ap.add_argument("--drive-bw", type=float, action="append", default=[],
                    help="drive bandwidth in bytes/s (repeatable)")
    ap.add_argument("--measure-drive", metavar="FILE",
                    help="measure this drive's bandwidth with O_DIRECT reads of FILE")
    ap.add_argument("--nvme-bw", type=float, default=7e9, help="the fast drive (7e9 bytes/s)")
    ap.add_argument("--blob-bytes", type=float,
                    help="stored bytes per expert blob (default: from V3's shapes and the "
                         "slice's expert type, rounded up to 4 KiB)")
    ap.add_argument("--hit-rate", type=float,
                    help="a measured hit rate to project with, besides the uniform-routing one")
    ap.add_argument("--json-out", help="write the projection here")
    a = ap.parse_args()

    with (sys.stdin if a.slice_json == "-" else open(a.slice_json)) as f:
        j = json.load(f)
    prof = j["profile_ms_per_token"]["tg"]
    dtype = j.get("expert_dtype", "q4_0")
    if dtype not in BYTES_PER_WEIGHT:
        sys.exit("project_r1: unknown expert dtype %r" % dtype)
    bpw = BYTES_PER_WEIGHT[dtype]
    n_att = a.slice_dense + a.slice_moe
    m = V3
    w = v3_weights(m)
    out = {"slice": {"model": j.get("model"), "dtype": dtype, "threads": j.get("threads"),
                     "tg_tps": j["tg"]["tps_median"], "profile_ms": prof}}

    print("V3 slice: %s (experts %s), %s threads, tg %.3f tok/s, %.1f MB read per token "
          "(experts %.1f MB)" % (j.get("model"), dtype, j.get("threads"), j["tg"]["tps_median"],
                                 j.get("bytes_per_token", 0) / 1e6,
                                 j.get("expert_bytes_per_token", 0) / 1e6))
    # ---- per-layer cost from the slice ----------------------------------------------------
    t_att = prof["attention"] / n_att
    t_dense = prof["dense_mlp"] / a.slice_dense
    t_moe = (prof["experts"] + prof["shared"] + prof["router"]) / a.slice_moe
    # The slice's head has --slice-vocab rows, R1's 129280: a product that small is dominated by
    # its overheads, so R1's head is costed at the rate the slice streamed its experts (the
    # same kernels on the same weight type), when r1 bench reports bytes by part.
    parts = j.get("bytes_per_token_parts") or {}
    stream_ms = prof["experts"] + prof["shared"]
    stream_b = parts.get("experts", 0) + parts.get("shared", 0)
    head_b = w["head"] * bpw
    if stream_b > 0 and stream_ms > 0:
        rate = stream_b / stream_ms  # bytes per ms
        t_head = head_b / rate
        head_how = "%.1f MB / %.2f GB/s (the slice's expert stream: %.1f MB in %.3f ms)" % (
            head_b / 1e6, rate / 1e6, stream_b / 1e6, stream_ms)
    else:
        t_head = prof["head"] * m["vocab"] / a.slice_vocab
        head_how = "%.3f x %d / %d vocab rows" % (prof["head"], m["vocab"], a.slice_vocab)
    t_other = prof["other"]
    print("\nper-layer cost measured on the slice (ms per decoded token):")
    print("  attention  %.3f / %d layers          = %.3f per layer" % (
        prof["attention"], n_att, t_att))
    print("  dense MLP  %.3f / %d layer           = %.3f per layer" % (
        prof["dense_mlp"], a.slice_dense, t_dense))
    print("  MoE        (experts %.3f + shared %.3f + router %.3f) / %d layers = %.3f per layer"
          % (prof["experts"], prof["shared"], prof["router"], a.slice_moe, t_moe))
    print("  head       %s = %.3f" % (head_how, t_head))
    print("  other      %.3f (per token, not per layer)" % t_other)
    if prof.get("expert_loading", 0) > 0.01 * prof.get("total", 1):
        print("  NOTE: the slice spent %.3f ms per token loading experts: run it with the "
              "experts in memory (unbounded budget, after the warm-up) for compute alone"
              % prof["expert_loading"])
    compute = (m["layers"] * t_att + m["dense_layers"] * t_dense + m["moe_layers"] * t_moe +
               t_head + t_other)
    print("  compute per token of R1: %d x %.3f + %d x %.3f + %d x %.3f + %.3f + %.3f = %.1f ms"
          % (m["layers"], t_att, m["dense_layers"], t_dense, m["moe_layers"], t_moe, t_head,
             t_other, compute))
    # A check on the scaling: the bytes R1 reads per token from memory at the slice run's best
    # triad bandwidth (a decoder that only streams its weights cannot beat this).
    read_b = (m["layers"] * w["attention"] + m["dense_layers"] * w["dense_mlp"] +
              m["moe_layers"] * (w["shared"] + m["active"] * w["expert"]) + w["head"]) * bpw
    triad = j.get("bandwidth_best_gbs", 0) * 1e9
    if triad > 0:
        print("  check: R1 reads %.2f GB of weights per token; at the slice run's best triad "
              "%.1f GB/s that takes at least %.1f ms" % (read_b / 1e9, triad / 1e9,
                                                          1000 * read_b / triad))

    # ---- memory -----------------------------------------------------------------------------
    attn_b = w["attention"] * bpw
    dense_b = (m["layers"] * attn_b + m["dense_layers"] * w["dense_mlp"] * bpw +
               m["moe_layers"] * (w["shared"] * bpw + w["router"] * 2) + w["head"] * bpw)
    blob = a.blob_bytes or (w["expert"] * bpw + 4095) // 4096 * 4096
    n_blobs = m["moe_layers"] * m["experts"]
    kv = 576 * 4 * m["layers"] * a.context
    budget = a.ram - a.os_reserve - dense_b - kv
    f = max(0.0, min(1.0, budget / (n_blobs * blob)))
    print("\nmemory of R1 (%s experts and dense weights; router BF16, embedding mapped, one row "
          "read per token):" % dtype)
    print("  dense weights: %d x %.1f MB attention + %d x %.1f MB dense MLP + %d x (%.1f MB "
          "shared + %.1f MB router) + %.1f MB head = %.2f GB" % (
              m["layers"], attn_b / 1e6, m["dense_layers"], w["dense_mlp"] * bpw / 1e6,
              m["moe_layers"], w["shared"] * bpw / 1e6, w["router"] * 2 / 1e6,
              w["head"] * bpw / 1e6, dense_b / 1e9))
    print("  experts: %d x %d = %d blobs of %.2f MB = %.1f GB" % (
        m["moe_layers"], m["experts"], n_blobs, blob / 1e6, n_blobs * blob / 1e9))
    print("  KV cache: 576 x 4 B x %d layers x %d tokens = %.2f GB" % (
        m["layers"], a.context, kv / 1e9))
    print("  expert budget on %.1f GiB: %.1f - %.1f (OS) - %.2f (dense) - %.2f (KV) = %.2f GB"
          " = %.1f%% of the experts (%d per layer)" % (
              a.ram / GiB, a.ram / 1e9, a.os_reserve / 1e9, dense_b / 1e9, kv / 1e9,
              budget / 1e9, 100 * f, int(f * m["experts"])))
    if budget <= 0:
        sys.exit("project_r1: the dense weights and KV cache alone do not fit")

    # ---- drives -----------------------------------------------------------------------------
    drives = [("this drive", bw) for bw in a.drive_bw]
    if a.measure_drive:
        bw = drive_bandwidth(a.measure_drive)
        print("\nthis drive, measured: O_DIRECT 16 MiB reads of %s: %.1f MB/s" % (
            a.measure_drive, bw / 1e6))
        drives.append(("this drive", bw))
    drives.append(("NVMe %.0f GB/s" % (a.nvme_bw / 1e9), a.nvme_bw))
    rates = [("uniform routing", f)]
    if a.hit_rate is not None:
        rates.append(("measured hit rate", a.hit_rate))
    out.update(compute_ms=compute, dense_bytes=dense_b, blob_bytes=blob, kv_bytes=kv,
               expert_budget=budget, cached_fraction=f, projections=[])
    print("\nprojected decode of DeepSeek-R1 671B (%s):" % dtype)
    for rname, h in rates:
        misses = m["moe_layers"] * m["active"] * (1 - h)
        io_bytes = misses * blob
        print("  %s: hit rate %.3f -> %d x %d x %.3f = %.1f expert reads per token = %.2f GB"
              % (rname, h, m["moe_layers"], m["active"], 1 - h, misses, io_bytes / 1e9))
        for dname, bw in drives:
            io = 1000 * io_bytes / bw
            overl = 1000 / max(compute, io)
            serial = 1000 / (compute + io)
            print("    %-16s %7.1f MB/s: io %.1f ms; overlapped 1000 / max(%.1f, %.1f) = %.3f "
                  "tok/s; serial 1000 / (%.1f + %.1f) = %.3f tok/s" % (
                      dname, bw / 1e6, io, compute, io, overl, compute, io, serial))
            out["projections"].append(dict(routing=rname, hit_rate=h, drive=dname, drive_bw=bw,
                                           io_ms=io, compute_ms=compute, tps_overlapped=overl,
                                           tps_serial=serial))
    if a.json_out:
        with open(a.json_out, "w") as fo:
            json.dump(out, fo, indent=1)
            fo.write("\n")


if __name__ == "__main__":
    main()
