"""Minimal safetensors reader/writer (docs/model.md §5.1), numpy only.

File layout: u64 LE header length N, N bytes of UTF-8 JSON (padded with spaces),
then the data buffer.  Header: {"__metadata__": {str: str}, name: {"dtype", "shape",
"data_offsets": [begin, end]}} with offsets relative to the data buffer.

Tensors are passed around as (dtype_string, numpy_array_of_storage_type):
  F32 -> '<f4', F16 -> '<f2', BF16 -> '<u2' (raw bits), F8_E4M3 -> 'u1' (raw codes),
  F64 '<f8', I8 'i1', U8 'u1', I32 '<i4', I64 '<i8'.
"""
import json
import os
import struct

import numpy as np

import quant

STORAGE = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "F8_E4M3": "u1",
    "I8": "i1", "U8": "u1", "I16": "<i2", "I32": "<i4", "I64": "<i8",
}

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


def write_file(path, tensors, metadata=None):
    """tensors: dict name -> (dtype, array).  Data is laid out sorted by (-itemsize, name),
    so every tensor start is aligned to its element size; the header is padded to 8 bytes."""
    names = sorted(tensors, key=lambda n: (-np.dtype(STORAGE[tensors[n][0]]).itemsize, n))
    header = {}
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for n in names:
        dt, arr = tensors[n]
        a = np.ascontiguousarray(np.asarray(arr).astype(STORAGE[dt], copy=False))
        b = a.tobytes()
        header[n] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    return off


def read_file(path):
    """-> (dict name -> (dtype, array), metadata dict or None).  Validates sizes."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        dt = info["dtype"]
        shape = tuple(info["shape"])
        b, e = info["data_offsets"]
        st = np.dtype(STORAGE[dt])
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if e - b != count * st.itemsize or e > len(data):
            raise ValueError("%s: bad data_offsets %r for %s %r" % (name, (b, e), dt, shape))
        arr = np.frombuffer(data, dtype=st, count=count, offset=b).reshape(shape)
        out[name] = (dt, arr)
    return out, meta


def to_float(dt, arr, dtype=np.float64):
    """Decode stored values to float (exact for every supported float type)."""
    if dt == "BF16":
        return quant.bf16_decode(arr).astype(dtype)
    if dt == "F8_E4M3":
        return quant.fp8_decode(arr, dtype)
    return np.asarray(arr).astype(dtype)


def shard_name(i, n):
    """DeepSeek-R1 naming: five-digit index, six-digit total (model-00001-of-000163)."""
    return "model-%05d-of-%06d.safetensors" % (i + 1, n)


def write_sharded(dirpath, tensors, shard_of, nshards, metadata=None):
    """Write tensors into nshards files (shard_of: name -> 0-based shard) plus the index."""
    weight_map = {}
    total = 0
    for s in range(nshards):
        part = {n: t for n, t in tensors.items() if shard_of[n] == s}
        fname = shard_name(s, nshards)
        total += write_file(os.path.join(dirpath, fname), part, metadata)
        for n in part:
            weight_map[n] = fname
    index = {"metadata": {"total_size": total},
             "weight_map": {k: weight_map[k] for k in sorted(weight_map)}}
    with open(os.path.join(dirpath, INDEX_NAME), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")


def load_dir(dirpath):
    """Load every tensor of a checkpoint directory (index.json if present, else
    model.safetensors).  -> dict name -> (dtype, array)."""
    idx = os.path.join(dirpath, INDEX_NAME)
    out = {}
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
        files = {}
        for name, fname in wm.items():
            files.setdefault(fname, []).append(name)
        for fname, names in files.items():
            t, _ = read_file(os.path.join(dirpath, fname))
            for n in names:
                out[n] = t[n]
    else:
        out, _ = read_file(os.path.join(dirpath, SINGLE_NAME))
    return out
