"""Build of the optional C++ extension (everything else is in pyproject.toml).

The extension is a plain shared library of ``extern "C"`` functions, loaded with
ctypes; it is marked optional, so the package installs without a compiler and
``NativeBackend().availability()`` then says why it cannot run.

Environment:

``ELBO_AUDIT_NATIVE_MARCH``
    Target of ``-march=`` (default ``native``: the fastest code for the machine
    that builds it, which then may not run on an older CPU); ``none`` for a
    portable build.
``ELBO_AUDIT_NATIVE_CXXFLAGS``
    Extra compiler flags, split on spaces.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError, ExecError

BASE_FLAGS = ["-O3", "-std=c++17", "-ffp-contract=fast", "-fvisibility=hidden", "-pthread"]
# GCC notes about the ABI of 64-byte vector arguments concern only internal functions.
QUIET_FLAGS = ["-Wno-psabi"]


class BuildExt(build_ext):
    """Compile with -O3 -std=c++17 and -march=native when the compiler accepts it."""

    def build_extension(self, ext: Any) -> None:
        if self.compiler.compiler_type == "msvc":
            ext.extra_compile_args = ["/O2", "/std:c++17"]
        else:
            flags = list(BASE_FLAGS)
            flags += [f for f in QUIET_FLAGS if self._accepts(f)]
            march = os.environ.get("ELBO_AUDIT_NATIVE_MARCH", "native").strip()
            if march and march.lower() not in ("0", "no", "none", "off", "false"):
                flag = f"-march={march}"
                if self._accepts(flag):
                    flags.append(flag)
                else:
                    print(f"elbo-audit-native: the compiler rejects {flag}; building without it")
            flags += shlex.split(os.environ.get("ELBO_AUDIT_NATIVE_CXXFLAGS", ""))
            ext.extra_compile_args = flags
            ext.extra_link_args = ["-pthread"]
        try:
            super().build_extension(ext)
        except Exception:
            # never ship a stale library from an earlier build next to the new sources
            Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            raise

    def get_export_symbols(self, ext: Any) -> list[str]:
        # loaded with ctypes, never imported: there is no PyInit_ function to export
        return []

    def _accepts(self, flag: str) -> bool:
        """Whether the C++ compiler compiles a trivial file with ``flag`` (and -Werror)."""
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "probe.cpp"
            src.write_text("int probe(int x) { return x + 1; }\n")
            try:
                self.compiler.compile(
                    [str(src)], output_dir=tmp, extra_postargs=["-std=c++17", "-Werror", flag]
                )
            except (CompileError, ExecError, OSError):
                return False
        return True


setup(
    ext_modules=[
        Extension(
            "elbo_audit_native._ean",
            sources=["csrc/ean_kernels.cpp"],
            language="c++",
            optional=True,
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
