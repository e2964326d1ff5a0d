#!/usr/bin/env python3
"""check_symbols: every r1_* function that libr1.so exports is declared in the Python binding.

usage: check_symbols.py [LIBRARY]   (default: $R1_LIBRARY)

Lists the library's exported r1_* symbols with `nm -D --defined-only`, then fails, naming them,
when any lacks a declaration (restype and argtypes) in r1/_ffi.py, or when loading the library
through the binding leaves one of them without argtypes. A new function in r1.h therefore fails
this check until the binding learns it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from r1 import _ffi  # noqa: E402


def exported_functions(path: str) -> List[str]:
    """Names of the r1_* functions (nm type T) the library exports, version suffix removed."""
    out = subprocess.run(
        ["nm", "-D", "--defined-only", path], capture_output=True, text=True, check=True
    ).stdout
    names = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1] in "TtWwi":
            name = re.sub(r"@.*$", "", fields[2])
            if name.startswith("r1_"):
                names.add(name)
    return sorted(names)


def main(argv: List[str]) -> int:
    path = argv[1] if len(argv) > 1 else os.environ.get("R1_LIBRARY", "")
    if not path:
        print("usage: check_symbols.py LIBRARY (or set R1_LIBRARY)", file=sys.stderr)
        return 2
    exported = exported_functions(path)
    if not exported:
        print(f"{path}: no r1_* functions exported", file=sys.stderr)
        return 1
    undeclared = [n for n in exported if n not in _ffi.DECLARATIONS]
    for name in undeclared:
        print(f"not declared in the Python binding (r1/_ffi.py): {name}")
    if undeclared:
        return 1
    lib = _ffi.Library(path)
    untyped = [n for n in exported if getattr(lib, n).argtypes is None]
    for name in untyped:
        print(f"declared but left without argtypes: {name}")
    if untyped:
        return 1
    stale = sorted(set(_ffi.DECLARATIONS) - set(exported))
    for name in stale:  # an older library may lack newer functions: informational only
        print(f"note: declared but not exported by {path}: {name}")
    print(f"{len(exported)} exported r1_* functions, all declared with argtypes and restype")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
