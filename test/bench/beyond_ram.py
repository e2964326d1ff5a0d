#!/usr/bin/env python3
"""beyond_ram.py: decode speed of libr1 and llama.cpp on a machine with less memory than the model.

Measures, in one run (issue 17; docs/performance.md "Beyond RAM"):
  * the drive's bandwidth: O_DIRECT reads of 16 MiB from the middle of the .r1m (dd iflag=direct),
    at the start and again after every round;
  * rounds that alternate, each starting with the page cache of both model files dropped
    (posix_fadvise DONTNEED, checked with mincore: test/bench/drop_file_cache.c):
      - llama.cpp (llama-bench, its default mmap) under a ballast process
        (test/bench/ballast.c) that holds memory until MemAvailable is about --leave,
      - libr1 (`r1 bench --expert-ram auto` or an explicit budget) under the same ballast,
      - libr1 without the ballast (unbounded expert store), for reference;
    the order of the first two swaps every round;
  * per run: tokens/s (median and range of the tool's repetitions), peak RSS (ru_maxrss from
    wait4) and the peaks of RssAnon / RssFile sampled from /proc/PID/status; for libr1 also the
    expert-store figures r1 bench --json reports (hits, misses, bytes read from the drive, budget;
    a field the CLI does not report is named as missing and estimated where the model's index
    allows);
  * IO floor = drive bandwidth / drive bytes per decoded token at the achieved hit rate, and the
    ratios the issue asks for: libr1 / llama.cpp, libr1 / IO floor, libr1 under the ballast /
    libr1 unbounded, peak RSS / (budget + dense weights + KV cache) with 5 % allowed;
  * "budget at or above the working set" (no ballast; --ws-r1m, e.g. the Q4_0 model, which fits
    in memory): in every round, the same model with a budget of all its experts' bytes
    (--ws-budget) and with an unbounded store, both warm: an untimed prefill of --ws-depth tokens
    (r1 bench -d) loads every expert the timed tokens use, which the timed tokens' misses (0)
    confirm; the issue asks for decode within 5 % of the unbounded figure. --only-working-set
    runs this part alone (no ballast, no llama.cpp).
Medians and min-max over the rounds at the end; --json-out keeps every number.

The ballast and the cache dropper are compiled from test/bench/*.c with cc into a temporary
directory unless --tools names a directory that holds them (the meson build's test/bench).

Usage (the measurement of docs/performance.md, 15-25 min on the 16.5 GB V2-Lite-shaped Q8_0):
    python3 test/bench/beyond_ram.py --r1 B/examples/r1 --r1m M/v2lite-q8_0.r1m \\
        --gguf M/v2lite-q8_0.gguf --llama LLAMA_CPP_DIR --tools B/test/bench --leave 8G \\
        --rounds 3 -n 32 --reps 2 --json-out beyond.json
Run it alone on the machine: the ballast takes all memory but --leave, which slows every other
process and can get one killed when it needs memory.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MiB = 1 << 20
GiB = 1 << 30


def log(msg=""):
    print(msg, flush=True)


def parse_bytes(s):
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgGtT]?)(i?B)?\s*", s)
    if not m:
        raise argparse.ArgumentTypeError("not a size: %r (e.g. 8G, 512M, 123456)" % s)
    return int(float(m.group(1)) * (1 << {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[
        m.group(2).lower()]))


def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0]) * 1024
    return out


def median(v):
    return statistics.median(v) if v else float("nan")


def spread(v):
    return "%.3f (%.3f-%.3f, n=%d)" % (median(v), min(v), max(v), len(v)) if v else "n/a"


# ---- tools -------------------------------------------------------------------------------------

def find_tools(tools_dir, work):
    """Paths of the ballast and drop_file_cache programs: from tools_dir, or compiled into work."""
    out = {}
    for name in ("ballast", "drop_file_cache"):
        if tools_dir:
            p = os.path.join(tools_dir, name)
            if not os.access(p, os.X_OK):
                sys.exit("beyond_ram: %s not found in --tools %s" % (name, tools_dir))
        else:
            cc = os.environ.get("CC", "cc")
            p = os.path.join(work, name)
            subprocess.run([cc, "-std=c11", "-O2", "-Wall", "-o", p,
                            os.path.join(HERE, name + ".c")], check=True)
        out[name] = p
    return out


def find_llama_tool(llama, tool):
    for rel in ("build/bin/", "bin/", ""):
        p = os.path.join(llama, rel + tool)
        if os.access(p, os.X_OK):
            return p
    sys.exit("beyond_ram: no %s under %s (a llama.cpp build directory or checkout with "
             "build/bin)" % (tool, llama))


def model_info(r1_bin, r1m, libr1):
    """r1_model_info of the model through the Python binding, or {} when it cannot be loaded."""
    lib = libr1 or next((p for p in (
        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(r1_bin))), "lib", "libr1.so"),
    ) if os.path.exists(p)), None)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "examples", "python"))
    if lib:
        env["R1_LIBRARY"] = lib
    code = ("import dataclasses, json, sys, r1\n"
            "with r1.Model(sys.argv[1], threads=1) as m:\n"
            "    print(json.dumps(dataclasses.asdict(m.info())))\n")
    r = subprocess.run([sys.executable, "-c", code, r1m], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        log("model info: not available (%s)" % r.stderr.strip().splitlines()[-1:])
        return {}
    return json.loads(r.stdout)


# ---- page cache, drive, ballast ----------------------------------------------------------------

def drop_cache(tools, files):
    """Evict files from the page cache; returns the dropper's lines (resident before / after)."""
    r = subprocess.run([tools["drop_file_cache"]] + files, capture_output=True, text=True)
    lines = r.stdout.strip().splitlines()
    for line in lines:
        log("    page cache: " + line)
    if r.returncode != 0:
        log("    WARNING: page cache not fully dropped (%s)" % r.stderr.strip())
    return lines


def drive_bandwidth(tools, path, mb):
    """Bytes/s of O_DIRECT sequential 16 MiB reads of path (up to mb MB from its middle)."""
    drop_cache(tools, [path])
    size = os.path.getsize(path)
    blocks = size // (16 * MiB)
    count = max(1, min(mb * 1000 * 1000 // (16 * MiB), blocks))
    skip = max(0, (blocks - count) // 2)
    t0 = time.monotonic()
    subprocess.run(["dd", "if=" + path, "of=/dev/null", "bs=16M", "count=%d" % count,
                    "skip=%d" % skip, "iflag=direct", "status=none"], check=True)
    got = min(count * 16 * MiB, size)  # a file under 16 MiB is read once, short
    bw = got / (time.monotonic() - t0)
    log("  drive: %d x 16 MiB O_DIRECT reads (%.1f MB): %.1f MB/s" % (count, got / 1e6, bw / 1e6))
    return bw


class Ballast:
    def __init__(self, tools, leave, fixed=None):
        size = ["--bytes", str(fixed)] if fixed else ["--leave", str(leave)]
        self.p = subprocess.Popen([tools["ballast"]] + size,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        deadline = time.monotonic() + 600
        for line in self.p.stdout:
            self.lines.append(line.rstrip())
            log("    " + line.rstrip())
            if line.startswith("ballast: ready"):
                break
            if time.monotonic() > deadline:
                break
        if not self.lines or not self.lines[-1].startswith("ballast: ready"):
            self.stop()
            sys.exit("beyond_ram: the ballast did not get ready")
        self.held = int(re.search(r"held (\d+) bytes", self.lines[-1]).group(1))
        self.locked = int(re.search(r"mlocked (\d+)", self.lines[-1]).group(1))

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


# ---- measured runs -----------------------------------------------------------------------------

def status_kb(pid, keys):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k = line.split(":", 1)[0]
                if k in keys:
                    out[k] = int(line.split()[1])
    except OSError:
        pass
    return out


def run_measured(cmd):
    """Runs cmd; returns (exit code, stdout, stderr, peak RSS bytes, sampled peaks, seconds)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = [], []
    readers = [threading.Thread(target=lambda s, b: b.append(s.read()), args=(p.stdout, out)),
               threading.Thread(target=lambda s, b: b.append(s.read()), args=(p.stderr, err))]
    for t in readers:
        t.start()
    peaks = {"RssAnon": 0, "RssFile": 0, "VmHWM": 0}
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        for k, v in status_kb(p.pid, peaks).items():
            peaks[k] = max(peaks[k], v * 1024)
        time.sleep(0.2)
    p.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join()
    return (p.returncode, "".join(out), "".join(err), ru.ru_maxrss * 1024, peaks,
            time.monotonic() - t0)


def run_llama(args, tool):
    """llama.cpp on the GGUF through its default mmap. llama-completion (the default) decodes
    reps x n tokens greedily after a two-token prompt with weight repacking off (-nr): on CPUs
    with AMX, repacking copies the weights into anonymous buffers, which is neither the mmap
    being compared nor possible in less memory than the model (and llama-bench, which cannot
    turn it off, aborts on DeepSeek models there). llama-bench (--llama-tool bench) runs
    -p 0 -n n -r reps and reports the median of its repetitions."""
    if args.llama_tool == "bench":
        cmd = [tool, "-m", args.gguf, "-t", str(args.threads), "-p", "0", "-n", str(args.n),
               "-r", str(args.reps), "-o", "json"]
    else:
        cmd = [tool, "-m", args.gguf, "-t", str(args.threads), "-n", str(args.n * args.reps),
               "-p", "hi", "-no-cnv", "-nr", "--temp", "0", "--ignore-eos", "-c",
               str(args.n * args.reps + 16), "-s", "1"]
    log("    $ " + " ".join(cmd))
    rc, out, err, maxrss, peaks, sec = run_measured(cmd)
    res = {"engine": "llama.cpp", "rc": rc, "seconds": sec, "peak_rss": maxrss,
           "peak_rss_anon": peaks["RssAnon"], "peak_rss_file": peaks["RssFile"]}
    if rc != 0:
        log("    %s failed (exit %d): %s" % (os.path.basename(tool), rc, err.strip()[-400:]))
        return res
    if args.llama_tool == "bench":
        tg = [t for t in json.loads(out) if t.get("n_gen", 0) > 0][0]
        samples = tg.get("samples_ts") or [tg["avg_ts"]]
    else:
        m = re.search(r"perf_print:\s+eval time =\s*([0-9.]+) ms /\s*(\d+) (?:runs|tokens)",
                      out + err)
        if not m:
            log("    llama-completion printed no eval time: %s" % err.strip()[-400:])
            res["rc"] = -1
            return res
        samples = [int(m.group(2)) / (float(m.group(1)) / 1000)]
    res.update(tps=median(samples), tps_min=min(samples), tps_max=max(samples))
    log("    llama.cpp: tg%d %.3f tok/s (min %.3f, max %.3f), peak RSS %.2f GB (anon %.2f, "
        "file %.2f), %.0f s" % (args.n, res["tps"], res["tps_min"], res["tps_max"], maxrss / 1e9,
                               peaks["RssAnon"] / 1e9, peaks["RssFile"] / 1e9, sec))
    return res


def r1_plan(r1_bin, r1m, ctx):
    """`r1 plan --json` (what --expert-ram auto would choose now), or None without r1 plan.
    Bandwidths are given so that plan does not spend time measuring them."""
    r = subprocess.run([r1_bin, "plan", "-m", r1m, "--json", "--ctx", str(ctx), "--mem-bw", "1",
                        "--drive-bw", "1"], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def r1_bench_options(r1_bin):
    """Which budget options this r1 bench takes (the CLI gains --expert-ram in issue 17)."""
    r = subprocess.run([r1_bin, "bench", "--help"], capture_output=True, text=True)
    text = r.stdout + r.stderr
    return {"expert_ram": "--expert-ram" in text, "cache_gb": "--cache-gb" in text}


# Names the expert-store fields may have in r1 bench --json (first found wins): those of
# r1_expert_cache_stats first, then other spellings.
FIELDS = {
    "hits": ["expert_hits", "hits", "cache_hits"],
    "misses": ["expert_misses", "misses", "cache_misses"],
    "drive_bytes": ["bytes_read", "expert_bytes_read", "drive_bytes", "read_bytes"],
    "budget": ["budget_bytes", "expert_budget_bytes", "expert_ram_bytes", "budget"],
    "hit_rate": ["hit_rate", "expert_hit_rate"],
    "stall_ns": ["stall_ns", "expert_stall_ns"],
    "prefetch_issued": ["prefetch_issued"],
    "prefetch_used": ["prefetch_used"],
    "prefetch_wasted_bytes": ["prefetch_wasted_bytes"],
    "misses_prefetched": ["misses_prefetched"],
}
STORE_OBJECTS = ("expert_cache", "expert_store", "store", "experts")


def pick(d, names):
    """The first of names in d, or in one of d's expert-store objects; None if absent."""
    if not isinstance(d, dict):
        return None
    for where in [d] + [d[k] for k in STORE_OBJECTS if isinstance(d.get(k), dict)]:
        for n in names:
            if isinstance(where.get(n), (int, float)):
                return where[n]
    return None


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, prefix + k + "."))
        elif isinstance(v, (int, float, str)):
            out[prefix + k] = v
    return out


def run_r1(args, budget_args, info, label):
    cmd = [args.r1, "bench", "-m", args.r1m, "-p", "0", "-n", str(args.n), "-t",
           str(args.threads), "--reps", str(args.reps), "--json", "--triad-mb", "1"] + budget_args
    log("    $ " + " ".join(cmd))
    rc, out, err, maxrss, peaks, sec = run_measured(cmd)
    res = {"engine": "libr1", "label": label, "rc": rc, "seconds": sec, "peak_rss": maxrss,
           "peak_rss_anon": peaks["RssAnon"], "peak_rss_file": peaks["RssFile"]}
    if rc != 0:
        log("    r1 bench failed (exit %d): %s" % (rc, err.strip()[-400:]))
        return res
    j = json.loads(out)
    res["json"] = j
    tg = j.get("tg", {})
    n_tok = tg.get("tokens", args.n) * j.get("reps", args.reps)
    res.update(tps=tg["tps_median"], tps_min=tg["tps_min"], tps_max=tg["tps_max"],
               tokens_timed=n_tok)
    # Expert-store figures of the timed tg repetitions: in "tg" first, then at the top level
    # (whole run, warm-up included: per-token figures from those are marked as such).
    found, missing = {}, []
    for key, names in FIELDS.items():
        v = pick(tg, names)
        scope = "tg"
        if v is None:
            v = pick(j, names)
            scope = "run"
        if v is None:
            missing.append(key)
        else:
            found[key] = (v, scope)
    res["store_fields"] = {k: v[0] for k, v in found.items()}
    k_active = info.get("n_experts_per_token") or 0
    n_moe = j.get("load_balance", {}).get("moe_layers") or 0
    uses = k_active * n_moe  # (layer, expert) pairs a decoded token runs
    if "misses" in found and found["misses"][1] == "tg":
        res["misses_per_token"] = found["misses"][0] / n_tok
    if "hits" in found and "misses" in found and found["hits"][1] == found["misses"][1]:
        h, m = found["hits"][0], found["misses"][0]
        res["hit_rate"] = h / (h + m) if h + m else float("nan")
    elif "hit_rate" in found:
        res["hit_rate"] = found["hit_rate"][0]
    elif "misses_per_token" in res and uses:
        res["hit_rate"] = 1.0 - res["misses_per_token"] / uses
        res["hit_rate_estimated"] = True
    if "drive_bytes" in found and found["drive_bytes"][1] == "tg":
        res["drive_bytes_per_token"] = found["drive_bytes"][0] / n_tok
    elif "misses_per_token" in res and info.get("n_expert_blobs"):
        stored = info.get("expert_stored_bytes", info["file_bytes"] - info["dense_bytes"])
        stored /= info["n_expert_blobs"]
        res["drive_bytes_per_token"] = res["misses_per_token"] * stored
        res["drive_bytes_estimated"] = True
    if "budget" in found:
        res["budget"] = found["budget"][0]
    if found.get("misses_prefetched", (0, ""))[1] == found.get("misses", (0, "-"))[1] and \
            found["misses"][0]:
        res["prefetch_recall"] = found["misses_prefetched"][0] / found["misses"][0]
    if "stall_ns" in found and found["stall_ns"][1] == "tg":
        res["stall_ms_per_token"] = found["stall_ns"][0] / 1e6 / n_tok
    if "prefetch_wasted_bytes" in found:
        res["prefetch_wasted_bytes"] = found["prefetch_wasted_bytes"][0]
    res["missing_fields"] = missing
    res["expert_bytes_per_token"] = j.get("expert_bytes_per_token")
    log("    libr1 (%s): tg%d %.3f tok/s (min %.3f, max %.3f), peak RSS %.2f GB (anon %.2f, "
        "file %.2f), %.0f s" % (label, args.n, res["tps"], res["tps_min"], res["tps_max"],
                               maxrss / 1e9, peaks["RssAnon"] / 1e9, peaks["RssFile"] / 1e9, sec))
    log("      expert store: %s" % ", ".join("%s %s (%s)" % (k, v[0], v[1])
                                            for k, v in found.items()) or "no fields reported")
    if missing:
        log("      not reported by this r1 bench --json: %s" % ", ".join(missing))
    extra = {k: v for k, v in flatten(j).items()
             if re.search(r"hit|miss|read|budget|prefetch|stall|wait|evict|io_", k)}
    if extra:
        log("      store-related JSON fields: %s" % json.dumps(extra))
    if "hit_rate" in res:
        log("      hit rate %.3f%s, misses/token %s, drive bytes/token %s%s" % (
            res["hit_rate"], " (from misses and k x MoE layers)" if res.get("hit_rate_estimated")
            else "", "%.1f" % res["misses_per_token"] if "misses_per_token" in res else "n/a",
            "%.1f MB" % (res["drive_bytes_per_token"] / 1e6) if "drive_bytes_per_token" in res
            else "n/a", " (estimated: misses x mean stored blob)" if res.get(
                "drive_bytes_estimated") else ""))
    return res


def run_working_set(args, info, tools, files, budget, order):
    """The two warm runs of "budget at or above the working set": budget (bytes) and unbounded,
    in order ("bounded", "unbounded" or the reverse), page cache dropped before each."""
    out = []
    for label in order:
        avail = meminfo()["MemAvailable"]
        log("  libr1 %s store, warm (%s, MemAvailable %.2f GiB)" % (
            label, "budget %.2f GB" % (budget / 1e9) if label == "bounded" else "unbounded",
            avail / GiB))
        drop = drop_cache(tools, files)
        run_args = argparse.Namespace(**vars(args))
        run_args.r1m, run_args.n, run_args.reps = args.ws_r1m, args.ws_n, args.ws_reps
        res = run_r1(run_args, ["--expert-ram", str(budget if label == "bounded" else 0),
                                "-d", str(args.ws_depth)], info, "ws-" + label)
        res["mem_available"] = avail
        res["page_cache"] = drop
        if label == "bounded" and "budget" not in res:
            res["budget"] = budget
        tg = res.get("json", {}).get("tg", {})
        res["timed_misses"] = tg.get("expert_misses")
        if res.get("tps") is not None:
            log("      timed tokens' expert misses: %s%s" % (
                res["timed_misses"], "" if res["timed_misses"] == 0 else
                "  (not warm: raise --ws-depth, or the budget is below the working set)"))
        out.append(res)
    return out


def kv_bytes(info, n_ctx):
    """The KV cache of n_ctx tokens: r1 plan's figure, else the latent cache's (kv_lora 512 +
    rope 64) float32 per token and layer (docs/model.md)."""
    if info.get("kv_bytes_per_token"):
        return info["kv_bytes_per_token"] * n_ctx
    return 576 * 4 * int(info.get("n_layers", 0)) * n_ctx


# ---- main --------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 1)[1])
    ap.add_argument("--r1", required=True, help="the r1 program (BUILD/examples/r1)")
    ap.add_argument("--r1m", required=True, help="the .r1m model")
    ap.add_argument("--gguf", help="the same weights as GGUF, for llama.cpp")
    ap.add_argument("--llama", help="llama.cpp checkout (with build/bin) or build directory")
    ap.add_argument("--no-llama", action="store_true", help="skip llama.cpp")
    ap.add_argument("--llama-tool", choices=("completion", "bench"), default="completion",
                    help="llama-completion -nr (default) or llama-bench (see run_llama)")
    ap.add_argument("--no-reference", action="store_true", help="skip libr1 without ballast")
    ap.add_argument("--leave", type=parse_bytes, default=8 * GiB,
                    help="MemAvailable the ballast leaves (default 8G)")
    ap.add_argument("--ballast-bytes", type=parse_bytes,
                    help="a ballast of this size instead of --leave (for tests)")
    ap.add_argument("--expert-ram", default="auto",
                    help="libr1's budget under the ballast: auto or BYTES (default auto)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-n", type=int, default=16, help="decoded tokens per repetition (default 16)")
    ap.add_argument("--reps", type=int, default=2, help="repetitions per run (default 2)")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--bw-mb", type=int, default=2048,
                    help="MB read with O_DIRECT for the drive bandwidth (default 2048)")
    ap.add_argument("--tools", help="directory holding built ballast and drop_file_cache")
    ap.add_argument("--libr1", help="libr1.so for the model's description (default: next to --r1)")
    ap.add_argument("--json-out", help="write every measurement here")
    ap.add_argument("--ws-r1m", help="the model of the working-set comparison (default --r1m; "
                    "one that fits in memory: the Q4_0 V2-Lite)")
    ap.add_argument("--ws-budget", default="all",
                    help="its bounded budget: BYTES, or all (default): every expert's bytes")
    ap.add_argument("--ws-depth", type=int, default=512,
                    help="untimed prefill tokens that load the working set (default 512)")
    ap.add_argument("--ws-n", type=int, default=32, help="timed tokens per repetition (default 32)")
    ap.add_argument("--ws-reps", type=int, default=3, help="repetitions per run (default 3)")
    ap.add_argument("--no-working-set", action="store_true",
                    help="skip the working-set comparison")
    ap.add_argument("--only-working-set", action="store_true",
                    help="only the working-set comparison: no ballast, no llama.cpp")
    args = ap.parse_args()
    args.ws_r1m = args.ws_r1m or args.r1m
    if args.only_working_set:
        args.no_llama = args.no_reference = True
    if not args.no_llama and not (args.gguf and args.llama):
        ap.error("--gguf and --llama are needed unless --no-llama")
    if args.rounds < 1 or args.n < 1 or args.reps < 1:
        ap.error("--rounds, -n and --reps must be >= 1")
    if args.ws_depth < 1 or args.ws_n < 1 or args.ws_reps < 1:
        ap.error("--ws-depth, --ws-n and --ws-reps must be >= 1")
    if args.only_working_set and args.no_working_set:
        ap.error("--only-working-set and --no-working-set exclude each other")
    work = tempfile.mkdtemp(prefix="beyond_ram.")
    try:
        measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(args, work):
    tools = find_tools(args.tools, work)
    llama_bench = None if args.no_llama else find_llama_tool(
        args.llama, "llama-bench" if args.llama_tool == "bench" else "llama-completion")
    files = [args.r1m] + ([args.gguf] if llama_bench else [])
    mi = meminfo()
    log("beyond_ram: %s" % time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    log("machine: %d CPUs, MemTotal %.2f GiB, MemAvailable %.2f GiB, SwapTotal %.2f GiB, "
        "load average %s" % (os.cpu_count(), mi["MemTotal"] / GiB, mi["MemAvailable"] / GiB,
                             mi.get("SwapTotal", 0) / GiB, " ".join(
                                 open("/proc/loadavg").read().split()[:3])))
    for f in files:
        log("model file: %s (%.2f GB)" % (f, os.path.getsize(f) / 1e9))
    info = model_info(args.r1, args.r1m, args.libr1)
    if info:
        log("libr1 model: %s, %d layers, %d routed experts (%d per token), dense %.2f GB, "
            "experts %.2f GB raw in %d blobs (%s)" % (
                info["architecture_name"], info["n_layers"], info["n_routed_experts"],
                info["n_experts_per_token"], info["dense_bytes"] / 1e9,
                info["expert_bytes"] / 1e9, info["n_expert_blobs"], info["expert_dtype"]))
    plan = r1_plan(args.r1, args.r1m, args.n)
    if plan:
        for k in ("expert_stored_bytes", "kv_bytes_per_token"):
            info[k] = plan[k]
        info.setdefault("dense_bytes", plan["dense_bytes"])
        info.setdefault("file_bytes", plan["file_bytes"])
        log("r1 plan: dense %.2f GB, experts stored %.2f GB, KV %d bytes per token, headroom "
            "%.2f GB" % (plan["dense_bytes"] / 1e9, plan["expert_stored_bytes"] / 1e9,
                         plan["kv_bytes_per_token"], plan["headroom_bytes"] / 1e9))
    opts = r1_bench_options(args.r1)
    if opts["expert_ram"]:
        ballast_budget = ["--expert-ram", args.expert_ram]
        reference_budget = ["--expert-ram", "0"]
    else:
        log("NOTE: this r1 bench has no --expert-ram; the budget is passed as --cache-gb")
        reference_budget = ["--cache-gb", "0"]
        ballast_budget = None  # computed per round from MemAvailable under the ballast
    held = ("holds %.2f GiB" % (args.ballast_bytes / GiB) if args.ballast_bytes else
            "leaves %.2f GiB available" % (args.leave / GiB))
    if args.only_working_set:
        log("ballast: none (--only-working-set)")
    else:
        log("ballast: %s; libr1 under it: %s" % (
            held, " ".join(ballast_budget) if ballast_budget else "--cache-gb (derived)"))
    log("")
    results = {"args": vars(args), "model_info": info, "drive_bw": [], "rounds": []}
    results["drive_bw"].append(drive_bandwidth(tools, args.r1m, args.bw_mb))
    ws_budget, ws_files = None, [args.ws_r1m]
    if not args.no_working_set:
        ws_info = info if args.ws_r1m == args.r1m else model_info(args.r1, args.ws_r1m,
                                                                   args.libr1)
        if args.ws_budget != "all":
            ws_budget = parse_bytes(args.ws_budget)
        elif ws_info.get("expert_bytes"):
            ws_budget = ws_info["expert_bytes"]
        elif (r1_plan(args.r1, args.ws_r1m, args.n) or {}).get("expert_bytes"):
            # without the Python binding (e.g. a sanitizer build it cannot load), r1 plan says it
            ws_info["expert_bytes"] = r1_plan(args.r1, args.ws_r1m, args.n)["expert_bytes"]
            ws_budget = ws_info["expert_bytes"]
        else:
            sys.exit("beyond_ram: the experts' bytes of %s are unknown (no Python binding): "
                     "give --ws-budget BYTES" % args.ws_r1m)
        results["ws_model_info"] = ws_info
        log("working set: %s, budget %.3f GB (%s) against unbounded, both after an untimed "
            "prefill of %d tokens" % (args.ws_r1m, ws_budget / 1e9, "every expert's bytes"
                                      if args.ws_budget == "all" else "--ws-budget",
                                      args.ws_depth))

    for r in range(args.rounds):
        log("round %d of %d" % (r + 1, args.rounds))
        rnd = {"runs": []}
        if args.only_working_set:
            rnd["runs"] += run_working_set(args, ws_info, tools, ws_files, ws_budget, [
                "bounded", "unbounded"] if r % 2 == 0 else ["unbounded", "bounded"])
            results["rounds"].append(rnd)
            log("")
            continue
        ballast = Ballast(tools, args.leave, args.ballast_bytes)
        rnd["ballast"] = {"held": ballast.held, "mlocked": ballast.locked,
                          "lines": ballast.lines}
        order = ["llama", "r1"] if r % 2 == 0 else ["r1", "llama"]
        for what in order:
            if what == "llama" and not llama_bench:
                continue
            avail = meminfo()["MemAvailable"]
            log("  %s under the ballast (MemAvailable %.2f GiB)" % (
                "llama.cpp" if what == "llama" else "libr1", avail / GiB))
            drop = drop_cache(tools, files)
            if what == "llama":
                res = run_llama(args, llama_bench)
            else:
                budget = ballast_budget
                if budget is None:
                    # No auto in this CLI: what auto is meant to compute, by hand: available
                    # memory minus dense weights, a KV cache and 10 % headroom.
                    b = avail * 0.9 - info.get("dense_bytes", avail * 0.3) - kv_bytes(info, args.n)
                    budget = ["--cache-gb", "%.3f" % max(b / 1e9, 0.01)]
                    log("    budget derived here: %s GB" % budget[1])
                planned = r1_plan(args.r1, args.r1m, args.n) if budget[1] == "auto" else None
                if planned:
                    log("    r1 plan now: --expert-ram auto -> %.3f GB (MemAvailable %.2f GiB, "
                        "headroom %.2f GB)" % (planned["expert_budget_bytes"] / 1e9,
                                               planned["ram_bytes"] / GiB,
                                               planned["headroom_bytes"] / 1e9))
                res = run_r1(args, budget, info, "ballast")
                if planned and "budget" not in res:
                    res["budget"] = planned["expert_budget_bytes"]
                    res["budget_from"] = "r1 plan just before the run"
                elif budget[1] != "auto" and "budget" not in res:
                    res["budget"] = parse_bytes(budget[1]) if budget[0] == "--expert-ram" \
                        else float(budget[1]) * 1e9
            res["mem_available"] = avail
            res["page_cache"] = drop
            res["ballast_alive"] = ballast.alive()
            if not ballast.alive():
                log("    WARNING: the ballast died during the run (exit %s; -9 is the OOM killer, "
                    "which takes it first): run invalid" % ballast.p.returncode)
            rnd["runs"].append(res)
        ballast.stop()
        if not args.no_reference:
            log("  libr1 without ballast (MemAvailable %.2f GiB)" % (
                meminfo()["MemAvailable"] / GiB))
            drop = drop_cache(tools, files)
            res = run_r1(args, reference_budget, info, "unbounded")
            res["page_cache"] = drop
            rnd["runs"].append(res)
        if not args.no_working_set:
            rnd["runs"] += run_working_set(args, ws_info, tools, ws_files, ws_budget, [
                "bounded", "unbounded"] if r % 2 == 0 else ["unbounded", "bounded"])
        bw = drive_bandwidth(tools, args.r1m, args.bw_mb)
        results["drive_bw"].append(bw)
        rnd["drive_bw"] = bw
        results["rounds"].append(rnd)
        log("")
    summarize(args, info, results)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1, default=str)
            f.write("\n")
        log("every number: %s" % args.json_out)


def summarize_ws(args, results):
    """Budget at or above the working set: both runs warm, compared within each round."""
    runs = [x for rnd in results["rounds"] for x in rnd["runs"] if x.get("tps") is not None]
    wsb = [x for x in runs if x.get("label") == "ws-bounded"]
    wsu = [x for x in runs if x.get("label") == "ws-unbounded"]
    ratio_ws, cold = [], 0
    for rnd in results["rounds"]:
        rr = {x.get("label"): x for x in rnd["runs"] if x.get("tps") is not None}
        b, u = rr.get("ws-bounded"), rr.get("ws-unbounded")
        if b and u:
            ratio_ws.append(b["tps"] / u["tps"])
            cold += (b.get("timed_misses") or 0) > 0 or (u.get("timed_misses") or 0) > 0
    if wsb or wsu:
        log("  budget >= working set (%s, budget %s GB, warm after -d %d):" % (
            os.path.basename(args.ws_r1m), spread([x["budget"] / 1e9 for x in wsb
                                                    if x.get("budget")]), args.ws_depth))
        log("    bounded:   %s tok/s" % spread([x["tps"] for x in wsb]))
        log("    unbounded: %s tok/s" % spread([x["tps"] for x in wsu]))
        log("    bounded / unbounded (same round):                 %s   [issue: >= 0.95]" %
            spread(ratio_ws))
        log("    timed expert misses: bounded %s, unbounded %s%s" % (
            [x.get("timed_misses") for x in wsb], [x.get("timed_misses") for x in wsu],
            "" if cold == 0 else "  (%d rounds not warm: not a valid comparison)" % cold))
    return {"ws_bounded_tps": [x["tps"] for x in wsb], "ws_unbounded_tps": [x["tps"] for x in wsu],
            "ws_bounded_over_unbounded": ratio_ws, "ws_rounds_not_warm": cold}


def summarize(args, info, results):
    drive_bw = median(results["drive_bw"])
    runs = [x for rnd in results["rounds"] for x in rnd["runs"]]

    def pick_runs(engine, label=None):
        return [x for x in runs if x["engine"] == engine and x.get("tps") is not None and
                (label is None or x.get("label") == label) and x.get("ballast_alive", True)]

    if args.only_working_set:
        log("summary (%d rounds; each tok/s is the median of the run's %d repetitions of tg%d)"
            % (len(results["rounds"]), args.ws_reps, args.ws_n))
        results["summary"] = summarize_ws(args, results)
        return
    llama = pick_runs("llama.cpp")
    r1b = pick_runs("libr1", "ballast")
    r1u = pick_runs("libr1", "unbounded")
    log("summary (%d rounds; each tok/s is the median of the run's %d repetitions of tg%d)" % (
        len(results["rounds"]), args.reps, args.n))
    log("  drive (O_DIRECT 16 MiB reads): %s MB/s" % spread([b / 1e6 for b in results["drive_bw"]]))
    log("  llama.cpp under ballast:   %s tok/s" % spread([x["tps"] for x in llama]))
    log("  libr1 under ballast:       %s tok/s" % spread([x["tps"] for x in r1b]))
    log("  libr1 unbounded:           %s tok/s" % spread([x["tps"] for x in r1u]))
    # Ratios within a round (the same minutes), then their median and range.
    ratio_llama, ratio_floor, ratio_ref, rss_ratio, rss_anon_ratio = [], [], [], [], []
    floors = []
    for rnd in results["rounds"]:
        rr = {(x["engine"], x.get("label")): x for x in rnd["runs"]
              if x.get("tps") is not None and x.get("ballast_alive", True)}
        b = rr.get(("libr1", "ballast"))
        if b is None:
            continue
        lc, u = rr.get(("llama.cpp", None)), rr.get(("libr1", "unbounded"))
        if lc:
            ratio_llama.append(b["tps"] / lc["tps"])
        if u:
            ratio_ref.append(b["tps"] / u["tps"])
        dbt = b.get("drive_bytes_per_token")
        if dbt:
            floor = max(rnd["drive_bw"], drive_bw) / dbt
            floors.append(floor)
            ratio_floor.append(b["tps"] / floor)
        budget = b.get("budget")
        if budget and info:
            limit = (budget + info["dense_bytes"] + kv_bytes(info, args.n)) * 1.05
            rss_ratio.append(b["peak_rss"] / limit)
            rss_anon_ratio.append(b["peak_rss_anon"] / limit)
    hr = [x["hit_rate"] for x in r1b if "hit_rate" in x]
    dbt = [x["drive_bytes_per_token"] / 1e6 for x in r1b if "drive_bytes_per_token" in x]
    log("  libr1 under ballast: hit rate %s, drive MB per token %s%s" % (
        spread(hr), spread(dbt), " (estimated from misses)" if any(
            x.get("drive_bytes_estimated") for x in r1b) else ""))
    log("  libr1 under ballast: prefetch recall %s, prefetched MB wasted %s, stall ms per "
        "token %s" % (spread([x["prefetch_recall"] for x in r1b if "prefetch_recall" in x]),
                      spread([x["prefetch_wasted_bytes"] / 1e6 for x in r1b
                              if "prefetch_wasted_bytes" in x]),
                      spread([x["stall_ms_per_token"] for x in r1b
                              if "stall_ms_per_token" in x])))
    log("  IO floor (drive bw, the round's or the median if higher / drive bytes per token): "
        "%s tok/s" % spread(floors))
    log("  libr1 / llama.cpp (both under ballast, same round): %s   [issue: >= 3]" % spread(
        ratio_llama))
    log("  libr1 / IO floor:                                   %s   [issue: >= 0.80]" % spread(
        ratio_floor))
    log("  libr1 under ballast / libr1 unbounded:              %s" % spread(ratio_ref))
    log("  peak RSS / ((budget + dense + KV) x 1.05):          %s   [issue: <= 1]" % spread(
        rss_ratio))
    log("    of which anonymous (RssAnon peak) / same limit:   %s" % spread(rss_anon_ratio))
    if not rss_ratio:
        log("    (no budget reported by r1 bench --json: RSS ratio not computed)")
    log("  libr1 expert budget under ballast, GB: %s" % spread(
        [x["budget"] / 1e9 for x in r1b if x.get("budget")]))
    log("  peak RSS GB: llama.cpp %s; libr1 ballast %s; libr1 unbounded %s" % (
        spread([x["peak_rss"] / 1e9 for x in llama]), spread([x["peak_rss"] / 1e9 for x in r1b]),
        spread([x["peak_rss"] / 1e9 for x in r1u])))
    results["summary"] = {
        "drive_bw_median": drive_bw, "llama_tps": [x["tps"] for x in llama],
        "r1_ballast_tps": [x["tps"] for x in r1b], "r1_unbounded_tps": [x["tps"] for x in r1u],
        "r1_over_llama": ratio_llama, "r1_over_io_floor": ratio_floor, "io_floor_tps": floors,
        "r1_ballast_over_unbounded": ratio_ref, "rss_over_limit": rss_ratio,
        "rss_anon_over_limit": rss_anon_ratio, "hit_rate": hr, "drive_mb_per_token": dbt,
        **summarize_ws(args, results)}


if __name__ == "__main__":
    main()
