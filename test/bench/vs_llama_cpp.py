#!/usr/bin/env python3
"""vs_llama_cpp.py: libr1 against llama.cpp on the same weights, engines alternated round by round (run through vs_llama_cpp.sh).

Each round runs, for every model, llama-bench and `r1 bench` on pp/tg from an empty cache and
on tg at depth (llama-bench -d with flash attention on, r1 bench -d), the engine that goes
first alternating from round to round so that a drift of the machine falls on both. It prints
per model and test the median over rounds of each engine's tokens/s (each run's own value is
the median of its repetitions), the min-max over rounds, the libr1/llama.cpp ratio of every
round and of the medians, the STREAM triad r1 bench measured in the same runs, the floors both
engines' bytes per decoded token set (split by part, libr1's from r1 bench --json, llama.cpp's
from the GGUF's tensor types), the CPU, and the CPU time other processes took during every
run (from /proc/stat, less this script's children), with the hypervisor's steal.
"""

import argparse
import json
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PARTS = ["embedding", "attention", "dense_mlp", "router", "shared", "experts", "head", "other"]


def cpu_model():
    """The model name, family/model/stepping and the vector extensions that choose kernels
    (a virtual machine may name its CPU only "Intel(R) Xeon(R) Processor")."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    k, v = line.split(":", 1)
                    info.setdefault(k.strip(), v.strip())
    except OSError:
        return "unknown"
    flags = set(info.get("flags", "").split())
    ext = [x for x in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
           if x in flags]
    return (f"{info.get('model name', 'unknown')} ({info.get('vendor_id', '?')} family "
            f"{info.get('cpu family', '?')} model {info.get('model', '?')} stepping "
            f"{info.get('stepping', '?')}; {' '.join(ext) or 'no AVX2'})")


def proc_stat():
    """(busy, steal, total) jiffies of all CPUs: busy is user+nice+system+irq+softirq."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    v += [0] * (8 - len(v))
    busy = v[0] + v[1] + v[2] + v[5] + v[6]
    return busy, v[7], sum(v[:8])


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run_measured(cmd, log, perf=None):
    """Runs cmd; returns (stdout, record) where record holds the wall time and the share of the
    machine's CPU time that other processes took meanwhile (busy time less our children's)."""
    if perf:
        cmd = ["perf", "stat", "-x", ",", "-o", perf, "-e",
               "task-clock,context-switches,cpu-migrations,page-faults,cycles,instructions,"
               "cache-misses", "--"] + cmd
    print("  $ " + " ".join(shlex.quote(c) for c in cmd), file=log, flush=True)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    b0, s0, t0j = proc_stat()
    la0, t0 = loadavg(), time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - t0
    b1, s1, t1j = proc_stat()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        sys.exit(f"vs_llama_cpp: failed ({p.returncode}): {' '.join(cmd)}")
    hz = os.sysconf("SC_CLK_TCK")
    ncpu = os.cpu_count() or 1
    own = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    span = max(t1j - t0j, 1) / hz  # CPU-seconds the machine had (all CPUs)
    rec = {
        "wall_s": wall,
        "own_cpu_s": own,
        "other_load_pct": max(0.0, (b1 - b0) / hz - own) / span * 100.0,
        "steal_pct": (s1 - s0) / hz / span * 100.0,
        "loadavg_before": la0,
        "loadavg_after": loadavg(),
        "cpus": ncpu,
    }
    if perf:
        rec["perf"] = parse_perf(perf)
    return p.stdout, rec


def parse_perf(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                c = line.strip().split(",")
                if len(c) >= 3 and c[2]:
                    out[c[2]] = c[0]
    except OSError:
        pass
    return out


def llama_bench(a, gguf, p, n, depth, log, perf):
    cmd = [a.llama_bench, "-m", gguf, "-t", str(a.threads), "-p", str(p), "-n", str(n),
           "-r", str(a.reps), "-o", "json"]
    if depth:
        cmd += ["-d", str(depth), "-fa", "1"]
    cmd += shlex.split(a.llama_args)
    out, rec = run_measured(cmd, log, perf)
    res = {}
    for t in json.loads(out):
        key = test_key(t["n_prompt"], t["n_gen"], t.get("n_depth", 0))
        samples = t.get("samples_ts") or [t["avg_ts"]]
        res[key] = {"tps": statistics.median(samples), "samples": samples}
    return res, rec, out


def r1_bench(a, r1m, p, n, depth, log, perf):
    cmd = [a.r1, "bench", "-m", r1m, "-t", str(a.threads), "-p", str(p), "-n", str(n),
           "--reps", str(a.reps), "--json", "--triad-mb", str(a.triad_mb)]
    if depth:
        cmd += ["-d", str(depth)]
    out, rec = run_measured(cmd, log, perf)
    j = json.loads(out)
    res = {}
    if j["pp"]["tokens"]:
        res[test_key(p, 0, depth)] = {"tps": j["pp"]["tps_median"]}
    if j["tg"]["tokens"]:
        res[test_key(0, n, depth)] = {"tps": j["tg"]["tps_median"]}
    rec["triad_best_gbs"] = j["bandwidth_best_gbs"]
    return res, rec, j


def test_key(p, n, depth):
    k = f"pp{p}" if p else f"tg{n}"
    return f"{k} @ d{depth}" if depth else k


def fmt_range(v):
    return f"{min(v):.2f}-{max(v):.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", "-m", action="append", required=True, metavar="LABEL:GGUF:R1M",
                    help="a model in both formats (repeatable)")
    ap.add_argument("--r1", required=True)
    ap.add_argument("--llama-bench", required=True)
    ap.add_argument("--gguf-py", help="llama.cpp's gguf-py folder (bytes per token by part)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", "-t", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3, help="repetitions inside each run")
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--depth", type=int, default=4096, help="0 skips the test at depth")
    ap.add_argument("--depth-gen", type=int, default=32)
    ap.add_argument("--triad-mb", type=int, default=512)
    ap.add_argument("--llama-args", default="", help="more llama-bench arguments")
    ap.add_argument("--perf", action="store_true", help="wrap every run in perf stat")
    ap.add_argument("--kernels", metavar="BENCH_KERNELS",
                    help="also run test/bench_kernels at expert and head shapes (CPU level "
                         "given by --kernel-level; shapes from the GGUF)")
    ap.add_argument("--kernel-level", type=int, default=1,
                    help="lowest CPU level bench_kernels times (0 scalar, 1 AVX2, 2 AVX-512); "
                         "every level from it up to the CPU's is timed")
    ap.add_argument("--out", default="", help="folder for the raw outputs and summary.json")
    a = ap.parse_args()

    models = []
    for m in a.model:
        parts = m.split(":")
        if len(parts) != 3 or not all(parts):
            sys.exit(f"vs_llama_cpp: --model takes LABEL:GGUF:R1M, not '{m}'")
        for path in parts[1:]:
            if not os.path.isfile(path):
                sys.exit(f"vs_llama_cpp: no file {path}")
        models.append(parts)
    out_dir = a.out or f"/tmp/vs_llama_cpp-{time.strftime('%Y%m%d-%H%M%S')}"
    os.makedirs(out_dir, exist_ok=True)
    log = sys.stderr

    cpu = cpu_model()
    print(f"CPU: {cpu}; {os.cpu_count()} logical CPUs; {a.threads} threads; {a.rounds} rounds "
          f"of {a.reps} repetitions; raw outputs in {out_dir}")
    if a.perf:
        print("perf stat wraps every run (hardware counters show <not supported> where the "
              "virtual machine exposes no PMU)")

    # The tests: pp and tg from an empty cache in one run, tg at depth in another.
    runs = [(a.p, a.n, 0)]
    if a.depth:
        runs.append((0, a.depth_gen, a.depth))
    res = {}  # (label, engine, test) -> [per-round tok/s]
    recs = []  # one per run
    r1_json = {}
    for rnd in range(a.rounds):
        for label, gguf, r1m in models:
            for p, n, depth in runs:
                order = ["llama.cpp", "libr1"] if (rnd % 2 == 0) else ["libr1", "llama.cpp"]
                for eng in order:
                    tag = f"r{rnd + 1}-{label}-{eng}-d{depth}"
                    perf = os.path.join(out_dir, tag + ".perf") if a.perf else None
                    print(f"round {rnd + 1}: {label} {eng} p={p} n={n} d={depth}", file=log,
                          flush=True)
                    if eng == "llama.cpp":
                        r, rec, raw = llama_bench(a, gguf, p, n, depth, log, perf)
                        text = raw
                    else:
                        r, rec, raw = r1_bench(a, r1m, p, n, depth, log, perf)
                        text = json.dumps(raw, indent=1)
                        if depth == 0:
                            r1_json.setdefault(label, []).append(raw)
                    with open(os.path.join(out_dir, tag + ".json"), "w") as f:
                        f.write(text)
                    for k, v in r.items():
                        res.setdefault((label, eng, k), []).append(v["tps"])
                    rec.update(round=rnd + 1, model=label, engine=eng, depth=depth,
                               tps={k: v["tps"] for k, v in r.items()})
                    recs.append(rec)

    summary = {"cpu": cpu, "threads": a.threads, "rounds": a.rounds, "reps": a.reps,
               "models": {}, "runs": recs}
    for label, gguf, r1m in models:
        triads = [x["triad_best_gbs"] for x in recs
                  if x["model"] == label and "triad_best_gbs" in x]
        triad = statistics.median(triads) if triads else 0
        print(f"\n## {label}: {os.path.basename(r1m)} (libr1) / {os.path.basename(gguf)} "
              f"(llama.cpp)\n")
        print(f"STREAM triad (r1 bench, best per run): median {triad:.2f} GB/s, "
              f"{fmt_range(triads) if triads else '-'} over the runs\n")
        print("| test | llama.cpp tok/s median (min-max) | libr1 tok/s median (min-max) | "
              "libr1 / llama.cpp (medians) | per round |")
        print("|---|---|---|---|---|")
        ms = {"tests": {}}
        keys = [test_key(p, 0, d) for p, n, d in runs if p] + \
               [test_key(0, n, d) for p, n, d in runs if n]
        for k in keys:
            lv, rv = res.get((label, "llama.cpp", k), []), res.get((label, "libr1", k), [])
            if not lv or not rv:
                continue
            lm, rm = statistics.median(lv), statistics.median(rv)
            per = [r / l for r, l in zip(rv, lv)]
            print(f"| {k} | {lm:.2f} ({fmt_range(lv)}) | {rm:.2f} ({fmt_range(rv)}) | "
                  f"{rm / lm:.2f}x | {', '.join(f'{x:.2f}' for x in per)} |")
            ms["tests"][k] = {"llama_cpp": lv, "libr1": rv, "llama_cpp_median": lm,
                              "libr1_median": rm, "ratio_of_medians": rm / lm,
                              "ratio_per_round": per}
        # Bytes per decoded token, part by part, and the floor each engine's bytes set.
        rj = r1_json.get(label, [])
        r1_parts = rj[0].get("bytes_per_token_parts", {}) if rj else {}
        r1_total = rj[0].get("bytes_per_token", 0) if rj else 0
        lj = {}
        if a.gguf_py:
            p = subprocess.run([sys.executable, os.path.join(HERE, "gguf_bytes.py"), "--gguf-py",
                                a.gguf_py, gguf], stdout=subprocess.PIPE, text=True)
            if p.returncode == 0:
                lj = json.loads(p.stdout)
        l_parts, l_total = lj.get("bytes_per_token_parts", {}), lj.get("bytes_per_token", 0)
        if r1_total and l_total:
            print("\nweight bytes per decoded token, MB (latent/KV cache not counted):\n")
            print("| part | llama.cpp | libr1 | libr1 / llama.cpp |")
            print("|---|---|---|---|")
            for part in PARTS:
                lb, rb = l_parts.get(part, 0), r1_parts.get(part, 0)
                if lb == 0 and rb == 0:
                    continue
                ratio = f"{rb / lb:.3f}" if lb else "-"
                print(f"| {part} | {lb / 1e6:.3f} | {rb / 1e6:.3f} | {ratio} |")
            print(f"| total | {l_total / 1e6:.1f} | {r1_total / 1e6:.1f} | "
                  f"{r1_total / l_total:.3f} |")
            types = lj.get("tensor_types", {})
            body = ("routed experts " + types["blk.N.ffn_gate_exps.weight"]
                    if "blk.N.ffn_gate_exps.weight" in types
                    else "MLP " + types.get("blk.N.ffn_gate.weight", "?"))  # a dense model
            print(f"\nllama.cpp tensor types: head {types.get('output.weight', '(tied)')}, "
                  f"embedding {types.get('token_embd.weight', '?')}, {body}")
            tgk = test_key(0, a.n, 0)
            if triad and (label, "libr1", tgk) in res:
                lf, rf = triad * 1e9 / l_total, triad * 1e9 / r1_total
                lm = statistics.median(res[(label, "llama.cpp", tgk)])
                rm = statistics.median(res[(label, "libr1", tgk)])
                print(f"floor at the median triad ({triad:.2f} GB/s): llama.cpp {lf:.2f} tok/s "
                      f"({tgk} reaches {100 * lm / lf:.1f} %), libr1 {rf:.2f} tok/s "
                      f"({100 * rm / rf:.1f} %)")
                ms["floor"] = {"triad_gbs": triad, "llama_cpp_tps": lf, "libr1_tps": rf,
                               "llama_cpp_fraction": lm / lf, "libr1_fraction": rm / rf}
        ms["bytes_per_token"] = {"libr1": r1_parts, "libr1_total": r1_total,
                                 "llama_cpp": l_parts, "llama_cpp_total": l_total}
        summary["models"][label] = ms

    print("\nload of other processes during each run (% of all CPUs' time, /proc/stat less "
          "this script's children; steal = taken by the hypervisor):\n")
    print("| round | model | engine | depth | wall s | other load % | steal % | "
          "loadavg before/after | tok/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for x in recs:
        tps = ", ".join(f"{k} {v:.2f}" for k, v in x["tps"].items())
        print(f"| {x['round']} | {x['model']} | {x['engine']} | {x['depth']} | {x['wall_s']:.0f} "
              f"| {x['other_load_pct']:.1f} | {x['steal_pct']:.1f} | "
              f"{x['loadavg_before']:.2f}/{x['loadavg_after']:.2f} | {tps} |")
    worst = max((x["other_load_pct"] for x in recs), default=0)
    print(f"\nother processes took up to {worst:.1f} % of the CPUs during a run"
          + (": the machine was not quiet; rerun these figures on a quiet one" if worst > 5
             else ""))
    if a.perf:
        print("\nperf stat per run (task-clock ms, context switches, migrations, cycles, "
              "instructions):")
        for x in recs:
            pf = x.get("perf", {})
            print(f"  round {x['round']} {x['model']} {x['engine']} d{x['depth']}: "
                  + ", ".join(f"{k}={v}" for k, v in pf.items()))
    if a.kernels:
        kernel_runs(a, models, summary, out_dir)
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"\nsummary: {os.path.join(out_dir, 'summary.json')}")


def kernel_runs(a, models, summary, out_dir):
    """test/bench_kernels at the expert shapes (gate/up and down), for a dense model (no
    experts) at its MLP (gate/up, down) and attention (q/o, k/v) shapes, and at the head shape of
    each model: weight GB/s of every kernel and level next to a triad of the same threads."""
    shapes = []
    for label, gguf, _ in models:
        if not a.gguf_py:
            break
        sys.path.insert(0, a.gguf_py)
        import gguf as g  # noqa: PLC0415

        r = g.GGUFReader(gguf)
        moe = any(t.name.endswith("_exps.weight") for t in r.tensors)
        pat = (r"blk\.\d+\.ffn_(gate|down)_exps\.weight$" if moe else
               r"blk\.0\.(ffn_gate|ffn_down|attn_q|attn_k)\.weight$")
        for t in r.tensors:
            m = re.match(pat, t.name)
            if m or t.name == "output.weight":
                cols, rows = int(t.shape[0]), int(t.shape[1])
                what = ("head" if t.name == "output.weight" else
                        f"expert {m.group(1)}" if moe else m.group(1))
                if (rows, cols, what) not in shapes:
                    shapes.append((rows, cols, what))
    print("\nkernel microbenchmark (test/bench_kernels, weight GB/s per dtype and level):")
    summary["kernels"] = []
    for rows, cols, what in shapes:
        cmd = [a.kernels, str(a.threads), "1", str(a.kernel_level), "768", str(rows), str(cols)]
        out, rec = run_measured(cmd, sys.stderr)
        print(f"\n### {what}: {rows} x {cols} (other load {rec['other_load_pct']:.1f} %)\n")
        print(out)
        summary["kernels"].append({"shape": [rows, cols], "what": what, "output": out,
                                   "other_load_pct": rec["other_load_pct"]})


if __name__ == "__main__":
    main()
