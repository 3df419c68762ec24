"""Finding and loading the compiled library (plain ``extern "C"`` functions, via ctypes)."""

from __future__ import annotations

import ctypes
import importlib.machinery
import importlib.util
import os
from functools import cache
from pathlib import Path

__all__ = ["ABI_VERSION", "EXTENSION", "Library", "library", "library_path"]

#: The interface version the Python side expects from the library.
ABI_VERSION = 1
#: Module name of the extension file (built by setup.py, never imported).
EXTENSION = "elbo_audit_native._ean"

_P = ctypes.c_void_p
_I = ctypes.c_int64
_F = ctypes.c_double
_N = ctypes.c_int

_SIGNATURES: dict[str, list[type]] = {
    "ean_log_density_f32": [_P, _I, _I, _P, _P, _P, _I, _F, _P, _N],
    "ean_log_density_f64": [_P, _I, _I, _P, _P, _P, _I, _F, _P, _N],
    "ean_log_marginals_f32": [_P, _I, _I, _P, _P, _P, _I, _P, _P, _N],
    "ean_log_marginals_f64": [_P, _I, _I, _P, _P, _P, _I, _P, _P, _N],
    "ean_interaction_f32": [_P, _I, _I, _P, _P, _P, _P, _P, _P, _P, _P, _I, _F, _P, _N],
    "ean_interaction_f64": [_P, _I, _I, _P, _P, _P, _P, _P, _I, _F, _P, _N],
}


def library_path() -> Path | None:
    """The built extension file, or None when it was not built.

    ``ELBO_AUDIT_NATIVE_LIB`` may name another build of the same library.
    """
    override = os.environ.get("ELBO_AUDIT_NATIVE_LIB")
    if override:
        return Path(override)
    try:
        spec = importlib.util.find_spec(EXTENSION)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin and os.path.isfile(spec.origin):
        return Path(spec.origin)
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = here / ("_ean" + suffix)
        if candidate.is_file():
            return candidate
    return None


class Library:
    """The loaded library with typed entry points."""

    def __init__(self, dll: ctypes.CDLL, path: Path) -> None:
        self.dll = dll
        self.path = path
        for name, argtypes in _SIGNATURES.items():
            fn = getattr(dll, name)
            fn.argtypes = argtypes
            fn.restype = ctypes.c_int
        dll.ean_build_info.restype = ctypes.c_char_p
        self.block_width = {
            "float32": int(dll.ean_block_width(0)),
            "float64": int(dll.ean_block_width(1)),
        }
        self.build_info = str(dll.ean_build_info().decode("ascii", "replace"))

    def call(self, name: str, *args: float) -> None:
        """Call a kernel; raise on its error code."""
        rc = int(getattr(self.dll, name)(*args))
        if rc == 2:
            raise MemoryError(f"elbo-audit-native: out of memory in {name}")
        if rc != 0:
            raise RuntimeError(f"elbo-audit-native: {name} failed (code {rc})")


@cache
def library() -> tuple[Library | None, str | None]:
    """The loaded library and None, or None and why it cannot be used (one line)."""
    path = library_path()
    if path is None:
        return None, (
            "not compiled: the C++ extension of elbo-audit-native was not built when it was "
            "installed (no C++ compiler?); reinstall it with g++ or clang++ available"
        )
    try:
        dll = ctypes.CDLL(str(path))
    except OSError as exc:
        return None, f"cannot load {path.name}: {exc}".replace("\n", " ")
    try:
        version = int(dll.ean_abi_version())
        if version != ABI_VERSION:
            return None, (
                f"stale build: {path.name} has interface version {version}, the package expects "
                f"{ABI_VERSION}; reinstall elbo-audit-native"
            )
        if not dll.ean_cpu_ok():
            dll.ean_build_info.restype = ctypes.c_char_p
            info = dll.ean_build_info().decode("ascii", "replace")
            return None, (
                f"{path.name} was compiled for instructions this CPU lacks ({info}); "
                "reinstall elbo-audit-native on this machine"
            )
        return Library(dll, path), None
    except AttributeError as exc:
        return None, f"incomplete build {path.name}: {exc}".replace("\n", " ")
