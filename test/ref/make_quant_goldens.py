"""Write golden Q8_0/Q4_0 blocks from quant.py for test_container's cross-check of lib/core/dtype.c.

Usage: python3 test/ref/make_quant_goldens.py OUTDIR
Writes OUTDIR/input.f32 (little-endian float32), OUTDIR/q8_0.bin and OUTDIR/q4_0.bin (packed
blocks as docs/format.md §8 describes). Deterministic (numpy RandomState).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quant  # noqa: E402


def inputs():
    rng = np.random.RandomState(1234)
    parts = [
        rng.standard_normal(32 * 40).astype(np.float32),                 # ordinary weights
        (rng.standard_normal(32 * 8) * 1e-4).astype(np.float32),         # small magnitudes
        (rng.standard_normal(32 * 4) * 300.0).astype(np.float32),        # large magnitudes
        np.zeros(32 * 2, dtype=np.float32),                              # all-zero blocks
        np.tile(np.array([1.0, -1.0, 0.5, -0.5], np.float32), 8 * 4),    # ties
        np.round(rng.standard_normal(32 * 4) * 8).astype(np.float32) / 8, # exact grid values
        -np.abs(rng.standard_normal(32 * 2)).astype(np.float32),         # negative maxima
    ]
    return np.concatenate(parts).astype(np.float32)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    x = inputs()
    x.astype("<f4").tofile(os.path.join(out, "input.f32"))
    d, q = quant.q8_0_quantize(x)
    with open(os.path.join(out, "q8_0.bin"), "wb") as f:
        f.write(quant.q8_0_pack(d, q))
    d, q = quant.q4_0_quantize(x)
    with open(os.path.join(out, "q4_0.bin"), "wb") as f:
        f.write(quant.q4_0_pack(d, q))


if __name__ == "__main__":
    main()
