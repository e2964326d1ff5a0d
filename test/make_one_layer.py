#!/usr/bin/env python3
"""make_one_layer.py: a tiny checkpoint cut to its first layer, converted to .r1m.

With one layer a cache row depends on its token and position only, so a context shift
(test_session_sync.c) must give what a fresh evaluation of the kept tokens at their new
positions gives. Standard library only: safetensors is an 8-byte header length, a JSON
header and the tensors' bytes.

usage: make_one_layer.py SRC_DIR R1_CLI OUT.r1m
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

DEEPER = re.compile(r"\.layers\.(\d+)\.")


def keep(name):
    m = DEEPER.search(name)
    return m is None or int(m.group(1)) == 0


def cut_safetensors(src, dst):
    with open(src, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out_header, chunks, off = {}, [], 0
    for name, info in header.items():
        if name == "__metadata__":
            out_header[name] = info
            continue
        if not keep(name):
            continue
        b, e = info["data_offsets"]
        chunks.append(data[b:e])
        out_header[name] = dict(info, data_offsets=[off, off + (e - b)])
        off += e - b
    raw = json.dumps(out_header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for c in chunks:
            f.write(c)


def main():
    src, cli, out = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as tmp:
        for name in os.listdir(src):
            path = os.path.join(src, name)
            if name.endswith(".safetensors"):
                cut_safetensors(path, os.path.join(tmp, name))
            elif name == "config.json":
                with open(path) as f:
                    cfg = json.load(f)
                cfg["num_hidden_layers"] = 1
                cfg["num_nextn_predict_layers"] = 0
                with open(os.path.join(tmp, name), "w") as f:
                    json.dump(cfg, f)
            elif name == "model.safetensors.index.json":
                with open(path) as f:
                    idx = json.load(f)
                idx["weight_map"] = {k: v for k, v in idx["weight_map"].items() if keep(k)}
                with open(os.path.join(tmp, name), "w") as f:
                    json.dump(idx, f)
            elif os.path.isfile(path):
                shutil.copy(path, tmp)
        subprocess.run([cli, "convert", tmp, out], check=True)


if __name__ == "__main__":
    main()
