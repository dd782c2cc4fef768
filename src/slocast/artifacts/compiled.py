"""Compiled tree inference: a bundle's GBMs turned into machine code.

Two compilers, chosen per model family, each with the native library as the fallback:

- **lleaves** (LLVM, LightGBM only) compiles the trees in blocks of 34 and walks a block over
  every row before the next, so a batch stays in the instruction cache: a 1,000-row batch of
  300 trees takes half TL2cgen's time here. The object file is built for generic x86-64 (no
  host-only instructions), so a bundle compiled on a trainer runs on any server of that
  architecture.
- **TL2cgen** (from the Treelite project) generates C and builds a shared library with gcc; it
  compiles XGBoost as well. Thresholds are quantized (integer compares in the tree walk, about
  20% faster, same outputs).

When neither can run (no compiler, no ``compile`` extra, a model the frontend cannot read) or a
compiled file cannot be used on this machine (another architecture), the bundle serves its
native model -- the native files are always in the bundle. A single row calls the compiled
entry point directly, because a library's own prediction wrapper (a DMatrix, ctypes
marshalling, a thread pool per call) costs more than the tree walk itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import io
import itertools
import logging
import os
import platform
import shutil
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "COMPILABLE_FAMILIES",
    "LIBRARY_SUFFIX",
    "CompiledRegressor",
    "LleavesRegressor",
    "can_compile",
    "compile_engine",
    "compile_model",
    "engine_available",
    "engine_target",
    "load_compiled",
]

log = logging.getLogger(__name__)
COMPILABLE_FAMILIES = ("lightgbm", "xgboost")
# Per family, the compilers to try, fastest first.
_ENGINES = {"lightgbm": ("lleaves", "tl2cgen"), "xgboost": ("tl2cgen",)}
LIBRARY_SUFFIX = {"lleaves": ".o", "tl2cgen": ".so"}
# A generic CPU for lleaves' code: the object file must run on whichever server loads the bundle.
_LLEAVES_CPU = "x86-64"


def engine_available(engine: str) -> bool:
    """True when this machine can compile with ``engine`` ("lleaves" or "tl2cgen")."""
    if engine == "lleaves":
        return (
            importlib.util.find_spec("lleaves") is not None
            and importlib.util.find_spec("llvmlite") is not None
        )
    return (
        shutil.which("gcc") is not None
        and importlib.util.find_spec("tl2cgen") is not None
        and importlib.util.find_spec("treelite") is not None
    )


def compile_engine(family: str) -> str | None:
    """The compiler this machine would use for ``family`` models; None when it has none."""
    return next((e for e in _ENGINES.get(family, ()) if engine_available(e)), None)


def can_compile(family: str) -> bool:
    """True when this machine can compile ``family`` models (library, toolchain, extra)."""
    return compile_engine(family) is not None


def engine_target(engine: str) -> str:
    """What a compiled file of ``engine`` runs on: checked at load, because LLVM aborts the
    process (rather than raising) on an object file it cannot read."""
    if engine == "lleaves":
        import llvmlite.binding as llvm

        return f"{llvm.get_process_triple()}/{_LLEAVES_CPU}"
    return f"{platform.machine()}-{sys.platform}"


def compile_model(model_path: Path, family: str, out: Path, engine: str) -> bool:
    """Compile a native model file (LightGBM text / XGBoost JSON) with ``engine`` to ``out``.

    Returns False (and logs why) when this model cannot be compiled, e.g. an XGBoost JSON
    newer than the Treelite frontend reads: the caller then keeps serving the native model.
    """
    if engine == "lleaves":
        return _compile_lleaves(model_path, out)
    import tl2cgen
    import treelite

    try:
        if family == "lightgbm":
            model = treelite.frontend.load_lightgbm_model(str(model_path))
        elif family == "xgboost":
            model = treelite.frontend.load_xgboost_model(str(model_path))
        else:
            return False
        # TL2cgen prints its native log lines to stdout, which carries `--json` output: keep
        # them in the debug log instead.
        with contextlib.redirect_stdout(io.StringIO()) as chatter:
            tl2cgen.export_lib(
                model,
                toolchain="gcc",
                libpath=str(out),
                params={"parallel_comp": 2, "quantize": 1},
                nthread=2,
            )
        log.debug("tl2cgen: %s", chatter.getvalue().strip())
    except (treelite.core.TreeliteError, tl2cgen.exception.TL2cgenError, OSError) as exc:
        return _not_compiled(model_path, out, exc)
    return True


def _lleaves_model(native_model: Path, object_file: Path) -> Any:
    """An lleaves model of ``native_model`` whose code is ``object_file``: compiled into it
    when the file does not exist yet, loaded from it when it does."""
    import lleaves

    model = lleaves.Model(model_file=str(native_model))
    model.compile(cache=str(object_file), target_cpu=_LLEAVES_CPU, target_cpu_features="")
    return model


def _compile_lleaves(model_path: Path, out: Path) -> bool:
    try:
        model = _lleaves_model(model_path, out)
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        return _not_compiled(model_path, out, exc)
    if model.num_model_per_iteration() != 1:
        return _not_compiled(model_path, out, ValueError("more than one output per row"))
    return out.is_file()


def _not_compiled(model_path: Path, out: Path, why: Exception) -> bool:
    log.warning("cannot compile %s (%s): the native model will serve", model_path.name, why)
    out.unlink(missing_ok=True)
    return False


def load_compiled(
    library: Path, engine: str, native_model: Path, threads: int = 0
) -> CompiledRegressor | LleavesRegressor:
    """A compiled model from a bundle; OSError when it cannot run here."""
    if engine == "lleaves":
        return LleavesRegressor(library, native_model, threads)
    if engine == "tl2cgen":
        return CompiledRegressor(library, threads)
    raise OSError(f"unknown compiled engine {engine!r}")


# TL2cgen's generated code reads a row as an array of ``union Entry {int missing; double
# fvalue; int qvalue;}``: a missing value is an entry whose int is -1. The all-ones bit pattern
# is a NaN whose low 32 bits are -1, so a row of doubles with its NaNs set to it is a valid
# Entry array as it stands (on little-endian machines, where the int aliases the low bytes).
_MISSING = float(np.array([-1], dtype=np.int64).view(np.float64)[0])
_DOUBLES = ctypes.POINTER(ctypes.c_double)
_ROW_CALL = ctypes.CFUNCTYPE(None, _DOUBLES, ctypes.c_int, _DOUBLES)


class _RowCall:
    """The generated ``predict(Entry*, pred_margin, double*)`` for one row.

    The row goes over as a ctypes array built from a Python list (a copy, which the generated
    code may quantize in place): a third of the cost of handing it numpy buffers.
    """

    def __init__(self, function: Any, features: int) -> None:
        self.function = function
        self.features = features
        self.row_type = ctypes.c_double * features

    def __call__(self, row: np.ndarray) -> np.ndarray:
        values = [_MISSING if v != v else v for v in row.tolist()]
        result = ctypes.c_double(0.0)
        self.function(self.row_type(*values), 0, ctypes.byref(result))
        return np.array([result.value])


def _row_call(library: Path) -> _RowCall | None:
    """The one-row entry point, when its layout is the one :data:`_MISSING` assumes (one float64
    target); None otherwise."""
    if sys.byteorder != "little":
        return None
    lib = ctypes.CDLL(str(library))
    lib.get_threshold_type.restype = lib.get_leaf_output_type.restype = ctypes.c_char_p
    lib.get_num_target.restype = lib.get_num_feature.restype = ctypes.c_int32
    classes = (ctypes.c_int32 * 1)()
    if lib.get_num_target() != 1:
        return None
    lib.get_num_class(classes)
    if classes[0] != 1 or {lib.get_threshold_type(), lib.get_leaf_output_type()} != {b"float64"}:
        return None
    return _RowCall(_ROW_CALL(("predict", lib)), int(lib.get_num_feature()))


class _Compiled:
    """What every compiled model refuses: it is built from a trained native model."""

    family = "compiled"

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        raise TypeError("compiled models are built from a trained native model, not fitted")

    def save(self, path: Path) -> None:
        raise TypeError("compiled models are saved by compile_model")


class CompiledRegressor(_Compiled):
    """Predicts with a TL2cgen shared library; same outputs as the native model."""

    def __init__(self, library: Path, threads: int = 0) -> None:
        """``threads``: for batches (0: every core); a single row runs on the caller's."""
        import tl2cgen

        self._tl2cgen: Any = tl2cgen
        try:
            self._predictor = tl2cgen.Predictor(str(library), nthread=threads or None)
            self._row = _row_call(library)
        except (tl2cgen.exception.TL2cgenError, OSError, AttributeError) as exc:
            raise OSError(f"cannot load compiled model {library.name}: {exc}") from exc

    def predict(self, X: np.ndarray) -> np.ndarray:
        # A row of the wrong width would be read past its end: those go to TL2cgen, which says so.
        if len(X) == 1 and self._row is not None and X.shape[1] == self._row.features:
            return self._row(X[0])
        matrix = self._tl2cgen.DMatrix(np.ascontiguousarray(X, dtype=np.float64), dtype="float64")
        return np.asarray(self._predictor.predict(matrix), dtype=np.float64).reshape(len(X))


# lleaves' entry point: forest_root(const double* rows, double* out, int start, int end).
_FOREST = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32)
# Rows per thread below which another thread costs more than it saves.
_MIN_ROWS_PER_THREAD = 128


class LleavesRegressor(_Compiled):
    """Predicts with an lleaves object file; same outputs as the native LightGBM model.

    Batches are split over ``threads`` (0: every core) on a pool kept for the model's life:
    ctypes lets go of the GIL during the call, so the slices run in parallel.
    """

    def __init__(self, library: Path, native_model: Path, threads: int = 0) -> None:
        with library.open("rb") as file:
            magic = file.read(4)
        if magic != b"\x7fELF":
            raise OSError(f"cannot load compiled model {library.name}: not an object file")
        try:
            model = _lleaves_model(native_model, library)
        except ImportError as exc:
            raise OSError(f"cannot load compiled model {library.name}: {exc}") from exc
        self._model = model  # owns the execution engine, and so the code the entry point runs
        address = ctypes.cast(model._c_entry_func, ctypes.c_void_p).value
        if not address:
            raise OSError(f"cannot load compiled model {library.name}: no entry point")
        self._forest = _FOREST(address)
        self.features = int(model.num_feature())
        self.threads = threads or os.cpu_count() or 1
        # Threads start on first use; made here so concurrent first batches share one pool.
        self._pool = (
            ThreadPoolExecutor(self.threads - 1, thread_name_prefix="lleaves")
            if self.threads > 1
            else None
        )
        self._local = threading.local()

    def predict(self, X: np.ndarray) -> np.ndarray:
        if X.ndim != 2 or X.shape[1] != self.features:
            # The code reads `features` doubles per row, whatever it is given: never let it.
            raise ValueError(f"expected rows of {self.features} features, got shape {X.shape}")
        n = len(X)
        if n == 1:
            return self._one(X)
        X = np.ascontiguousarray(X, dtype=np.float64)
        out = np.empty(n)
        rows, results = X.ctypes.data, out.ctypes.data
        parts = min(self.threads, n // _MIN_ROWS_PER_THREAD)
        if parts <= 1 or self._pool is None:
            self._forest(rows, results, 0, n)
            return out
        edges = np.linspace(0, n, parts + 1).astype(int).tolist()
        pending = [
            self._pool.submit(self._forest, rows, results, start, end)
            for start, end in itertools.pairwise(edges[1:])
        ]
        self._forest(rows, results, 0, edges[1])
        for job in pending:
            job.result()
        return out

    def _one(self, X: np.ndarray) -> np.ndarray:
        """One row through buffers kept per thread: reading a numpy array's address costs a
        microsecond, a sixth of the whole tree walk."""
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            row, result = np.empty(self.features), np.empty(1)
            buffers = self._local.buffers = (row, result, row.ctypes.data, result.ctypes.data)
        row, result, row_address, result_address = buffers
        row[:] = X[0]
        self._forest(row_address, result_address, 0, 1)
        return result.copy()
