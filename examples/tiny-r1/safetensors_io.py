"""Minimal safetensors writer/reader (spec 5.1), no third-party package.

File layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON
header (padded with spaces to a multiple of 8), then the raw little-endian,
C-contiguous tensor data; each header entry gives dtype, shape and
data_offsets [begin, end) relative to the start of the data buffer.
"""

import json
import struct

import numpy as np
import torch

_SIZES = {"BF16": 2, "F32": 4, "F16": 2, "I64": 8}


def _raw(t, dtype):
    t = t.detach().cpu().contiguous()
    if dtype == "BF16":
        # torch rounds float32 -> bfloat16 to nearest even
        return t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    if dtype == "F32":
        return t.to(torch.float32).numpy().astype("<f4").tobytes()
    raise ValueError(dtype)


def save(path, tensors, dtypes, metadata=None):
    """tensors: dict name -> torch tensor; dtypes: dict name -> 'BF16' | 'F32'.
    Tensors are written in sorted name order."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name in sorted(tensors):
        dt = dtypes[name]
        b = _raw(tensors[name], dt)
        shape = list(tensors[name].shape)
        assert len(b) == int(np.prod(shape, dtype=np.int64)) * _SIZES[dt]
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def load(path):
    """Returns dict name -> float32 torch tensor (BF16 widened exactly), and the dtypes."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    base = 8 + n
    out, dts = {}, {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        b, e = h["data_offsets"]
        raw = buf[base + b: base + e]
        shape = h["shape"]
        assert e - b == int(np.prod(shape, dtype=np.int64)) * _SIZES[h["dtype"]], name
        if h["dtype"] == "BF16":
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            a = u.view(np.float32)
        elif h["dtype"] == "F32":
            a = np.frombuffer(raw, dtype="<f4")
        else:
            raise ValueError(h["dtype"])
        out[name] = torch.from_numpy(a.reshape(shape).copy())
        dts[name] = h["dtype"]
    return out, dts
