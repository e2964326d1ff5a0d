#!/usr/bin/env python3
"""check_installed.py: the binding as `meson install` and `pip install` deliver it, each imported
from where it was installed (never from the source tree) and answering on the shipped model.

usage: check_installed.py BUILD_DIR MODEL

1. `meson install --destdir` into a scratch root: the staged package must carry r1/_config.py
   naming the libr1 installed with it (PREFIX/LIBDIR/libr1.so.1, which must be staged there),
   and, with $R1_LIBRARY unset, pick that library first.
2. `pip install --no-build-isolation --no-index` of examples/python (a copy: setuptools builds
   in the source directory) into a scratch directory: it must import and, given the built
   library through $R1_LIBRARY, generate.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

# Run in a child interpreter: imports r1 from sys.argv[1] and answers on sys.argv[2].
SMOKE = r"""
import os, sys
import r1
pkg = os.path.dirname(os.path.abspath(r1.__file__))
assert pkg.startswith(os.path.abspath(sys.argv[1])), f"r1 imported from {pkg}"
if len(sys.argv) > 3:  # the staged install: its own library comes first, then load it
    assert r1._ffi.candidates()[0] == r1._ffi.installed_library() == sys.argv[3], (
        r1._ffi.candidates())
    r1.load_library(sys.argv[4])
with r1.Model(sys.argv[2]) as m:
    print(m.chat("What is 347 + 285?").strip())
"""


def option(build_dir: str, name: str) -> str:
    out = subprocess.run(["meson", "introspect", build_dir, "--buildoptions"],
                         capture_output=True, text=True, check=True)
    return next(o["value"] for o in json.loads(out.stdout) if o["name"] == name)


def smoke(site: str, model: str, *extra: str, env: dict) -> None:
    out = subprocess.run([sys.executable, "-c", SMOKE, site, model, *extra], capture_output=True,
                         text=True, timeout=300, env=env, cwd=site)
    if out.returncode != 0 or out.stdout.strip() != "The answer is 632.":
        sys.exit(f"smoke test from {site} failed:\n{out.stdout}\n{out.stderr}")


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("R1_LIBRARY", "PYTHONPATH")}
    env.update(extra)
    return env


def check_meson_install(build_dir: str, model: str, work: str) -> None:
    root = os.path.join(work, "root")
    log = subprocess.run(["meson", "install", "-C", build_dir, "--destdir", root, "--no-rebuild"],
                         capture_output=True, text=True)
    if log.returncode != 0:
        sys.exit("meson install failed:\n" + log.stdout + log.stderr)
    configs = [os.path.join(d, "_config.py") for d, _, files in os.walk(root)
               if os.path.basename(d) == "r1" and "_config.py" in files]
    if len(configs) != 1:
        sys.exit(f"expected one installed r1/_config.py under {root}, found {configs}")
    site = os.path.dirname(os.path.dirname(configs[0]))
    scope: dict = {}
    with open(configs[0], encoding="utf-8") as f:
        exec(f.read(), scope)
    libdir = option(build_dir, "libdir")
    if not os.path.isabs(libdir):
        libdir = os.path.join(option(build_dir, "prefix"), libdir)
    want = os.path.join(libdir, "libr1.so.1")
    if scope["LIBRARY"] != want:
        sys.exit(f"_config.LIBRARY is {scope['LIBRARY']!r}, expected {want!r}")
    staged = root + want
    if not os.path.exists(staged):
        sys.exit(f"{staged}: the library _config.py names was not installed")
    # Where this Python searches under the prefix (/usr/local on Debian), there it must be.
    final = site[len(root):]
    prefix = os.path.normpath(option(build_dir, "prefix")) + os.sep
    searched = [p for p in sys.path if p.startswith(prefix)]
    if searched and final not in searched:
        sys.exit(f"installed into {final}, which {sys.executable} does not search ({searched})")
    smoke(site, model, want, staged, env=clean_env(PYTHONPATH=site))
    print(f"meson install: {configs[0]} -> {want}")


def check_pip_install(build_dir: str, model: str, work: str) -> None:
    src = os.path.join(work, "src")
    shutil.copytree(HERE, src, ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                             "__pycache__"))
    site = os.path.join(work, "pip-site")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-index",
           "--no-deps", "--target", site, src]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         env=clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1"))
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed (needs python3-pip, python3-setuptools, "
                 f"python3-wheel):\n{out.stdout}\n{out.stderr}")
    lib = os.path.join(build_dir, "lib", "libr1.so.1")
    smoke(site, model, env=clean_env(PYTHONPATH=site, R1_LIBRARY=lib))
    print(f"pip install: {site}")


def main() -> int:
    build_dir, model = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as work:
        check_meson_install(build_dir, model, work)
        check_pip_install(build_dir, model, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
