"""Compiled tree inference: a bundle's GBMs turned into a C shared library by TL2cgen.

TL2cgen (from the Treelite project) translates LightGBM / XGBoost tree ensembles into C and
builds a shared library, so prediction walks the trees without the library's own Python
wrapping. Compilation needs a C compiler (gcc) and the ``compile`` extra; when either is missing,
or the library cannot be loaded on this machine (another architecture), the bundle serves its
native model instead -- the native files are always in the bundle.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import shutil
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
                model, toolchain="gcc", libpath=str(out), params={"parallel_comp": 2}, nthread=2
            )
        log.debug("tl2cgen: %s", chatter.getvalue().strip())
    except (treelite.core.TreeliteError, tl2cgen.exception.TL2cgenError, OSError) as exc:
        log.warning("cannot compile %s (%s): the native model will serve", model_path.name, exc)
        out.unlink(missing_ok=True)
        return False
    return True


class CompiledRegressor:
    """Predicts with a TL2cgen shared library; same outputs as the native model."""

    family = "compiled"

    def __init__(self, library: Path, threads: int = 1) -> None:
        import tl2cgen

        self._tl2cgen: Any = tl2cgen
        try:
            self._predictor = tl2cgen.Predictor(str(library), nthread=threads)
        except tl2cgen.exception.TL2cgenError as exc:
            raise OSError(f"cannot load compiled model {library.name}: {exc}") from exc

    def predict(self, X: np.ndarray) -> np.ndarray:
        matrix = self._tl2cgen.DMatrix(np.ascontiguousarray(X, dtype=np.float64), dtype="float64")
        return np.asarray(self._predictor.predict(matrix), dtype=np.float64).reshape(len(X))

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        raise TypeError("compiled models are built from a trained native model, not fitted")

    def save(self, path: Path) -> None:
        raise TypeError("compiled models are saved by compile_model")
