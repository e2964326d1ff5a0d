"""Print / write one tensor of a checkpoint, dequantised (debugging aid).

  /usr/bin/python3 test/ref/dump_tensor.py CKPT_DIR [NAME] [--variant src|q8_0|q4_0]
                                           [--out FILE.f32] [--f64] [--raw] [-n N]

Without NAME: list all tensors (name, dtype, shape).
--variant : 'src' = exact dequantisation (FP8 * weight_scale_inv, BF16); 'q8_0'/'q4_0' = the
            converter's quantise->dequantise round trip (only for tensors it quantises).
--out     : write raw little-endian float32 (or float64 with --f64), row-major.
--raw     : show the stored values (FP8 codes / bf16 bits) instead of dequantised floats.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quant  # noqa: E402
import safetensors_io as st  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("name", nargs="?")
    ap.add_argument("--variant", default="src", choices=["src", "q8_0", "q4_0"])
    ap.add_argument("--out")
    ap.add_argument("--f64", action="store_true")
    ap.add_argument("--raw", action="store_true")
    ap.add_argument("-n", type=int, default=8, help="rows/cols shown")
    a = ap.parse_args()
    raw = st.load_dir(a.ckpt)
    if a.name is None:
        for n in sorted(raw):
            print("%-64s %-8s %s" % (n, raw[n][0], list(raw[n][1].shape)))
        return
    dt, arr = raw[a.name]
    if a.raw:
        x = np.asarray(arr)
    elif dt == "F8_E4M3":
        x = quant.fp8_block_dequant(arr, raw[a.name + "_scale_inv"][1])
    else:
        x = st.to_float(dt, arr, np.float64)
    if not a.raw and a.variant != "src":
        if not quant.should_quantize(a.name, x.ndim):
            print("note: %s is not quantised by the converter; showing source values" % a.name)
        else:
            x = quant.roundtrip(x.astype(np.float32), a.variant).astype(np.float64)
    print("%s  dtype=%s  shape=%s  variant=%s" % (a.name, dt, list(arr.shape), a.variant))
    if dt == "F8_E4M3":
        print("weight_scale_inv:", raw[a.name + "_scale_inv"][1])
    if not a.raw:
        print("min %.9g max %.9g mean %.9g rms %.9g" %
              (x.min(), x.max(), x.mean(), np.sqrt(np.mean(x * x))))
    np.set_printoptions(precision=8, linewidth=160, suppress=False)
    print(x[tuple(slice(0, a.n) for _ in x.shape)])
    if a.out:
        x.astype("<f8" if a.f64 else "<f4").tofile(a.out)
        print("wrote", a.out)


if __name__ == "__main__":
    main()
