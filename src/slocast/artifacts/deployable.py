"""A bundle as a plain Python model: ``DeployableModel.load(path).predict(frame)``.

For notebooks, batch jobs and schedulers that call slocast in process: the bundle carries the
preprocessing (feature pipeline), the model, the calibration and the metadata, so a frame of
raw jobs -- the columns the domain names, extra columns ignored -- is all it needs. Its numbers
are checked as a prediction server checks them: a text where a number is due is an error
naming the row and column, not a missing value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from slocast.artifacts.bundle import ModelBundle, load_bundle, validate_frame
from slocast.errors import InputError

__all__ = ["DeployableModel"]


@dataclass(frozen=True)
class DeployableModel:
    bundle: ModelBundle

    @classmethod
    def load(cls, path: Path | str) -> DeployableModel:
        """Load and verify a bundle directory (hashes, feature schema)."""
        return cls(load_bundle(Path(path)))

    @property
    def metadata(self) -> dict[str, Any]:
        """The manifest: domain, family, promised coverage, provenance (e.g. tuned params)."""
        return dict(self.bundle.manifest)

    def predict(self, frame: pd.DataFrame, coverage: float | None = None) -> pd.DataFrame:
        """``point`` and ``upper`` (the allocation at ``coverage``) per row, same index."""
        spec = self.bundle.spec
        required = [c for c in spec.features if c not in spec.optional]
        if spec.user_request:
            required.append(spec.user_request)
        missing = [c for c in dict.fromkeys(required) if c not in frame.columns]
        if missing:
            raise InputError(f"input frame lacks column {missing[0]!r}", field=missing[0])
        validate_frame(frame, spec)
        # Optional inputs (history features) absent from the frame count as unknown.
        full = frame.assign(**{c: float("nan") for c in spec.optional if c not in frame.columns})
        bounds = self.bundle.predict_frame(full, coverage)
        return pd.DataFrame({"point": bounds.point, "upper": bounds.upper}, index=frame.index)
