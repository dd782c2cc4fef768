"""Compiled tree inference: a bundle's GBMs turned into a C shared library by TL2cgen.

TL2cgen (from the Treelite project) translates LightGBM / XGBoost tree ensembles into C and
builds a shared library, so prediction walks the trees without the library's own Python
wrapping. Compilation needs a C compiler (gcc) and the ``compile`` extra; when either is missing,
or the library cannot be loaded on this machine (another architecture), the bundle serves its
native model instead -- the native files are always in the bundle.

Models are compiled with quantized thresholds (TL2cgen's ``quantize``: integer compares in the
tree walk, about 20% faster, same outputs). Batches go through TL2cgen's predictor; a single
row calls the generated ``predict`` function directly, because the predictor's per-call setup
(a DMatrix, ctypes marshalling) costs five times the tree walk itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import io
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["COMPILABLE_FAMILIES", "CompiledRegressor", "can_compile", "compile_model"]

log = logging.getLogger(__name__)
COMPILABLE_FAMILIES = ("lightgbm", "xgboost")


def can_compile(family: str) -> bool:
    """True when this machine can compile ``family`` models (library, toolchain, extra)."""
    return (
        family in COMPILABLE_FAMILIES
        and shutil.which("gcc") is not None
        and importlib.util.find_spec("tl2cgen") is not None
        and importlib.util.find_spec("treelite") is not None
    )


def compile_model(model_path: Path, family: str, out: Path) -> bool:
    """Compile a native model file (LightGBM text / XGBoost JSON) to the shared library ``out``.

    Returns False (and logs why) when this model cannot be compiled, e.g. an XGBoost JSON
    newer than the Treelite frontend reads: the caller then keeps serving the native model.
    """
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
        log.warning("cannot compile %s (%s): the native model will serve", model_path.name, exc)
        out.unlink(missing_ok=True)
        return False
    return True


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


class CompiledRegressor:
    """Predicts with a TL2cgen shared library; same outputs as the native model."""

    family = "compiled"

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

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        raise TypeError("compiled models are built from a trained native model, not fitted")

    def save(self, path: Path) -> None:
        raise TypeError("compiled models are saved by compile_model")
