"""Model bundles: an immutable directory holding everything needed to serve one domain.

::

    manifest.json      format version, bundle version id, domain spec, coverage promise, model
                       family, feature-schema hash, library versions, provenance, and the
                       sha256 of every other file
    features.json      the fitted feature pipeline (shared with training, so no skew)
    model_point.*      median model, in its library's native format
    model_upper.*      upper-quantile model, native format
    calibration.json   conformal scores per group, ACI state, request policy
    metrics.json       what was measured when the bundle was made

A bundle whose files do not match their hashes, or whose feature schema does not match the
manifest, is refused with :class:`~slocast.errors.BundleError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slocast.artifacts.compiled import (
    LIBRARY_SUFFIX,
    compile_engine,
    compile_model,
    engine_target,
    load_compiled,
)
from slocast.calibration import AdaptiveConformal, ConformalUpper
from slocast.calibration.forecaster import CalibratedForecaster
from slocast.calibration.history import HistoryExpert
from slocast.calibration.unseen import UnseenShare
from slocast.errors import BundleError, InputError
from slocast.features import (
    FeaturePipeline,
    column_group_keys,
    group_keys,
    record_group_keys,
)
from slocast.models.base import Bounds, Regressor
from slocast.models.families import FAMILIES, load_regressor
from slocast.models.quantile import QuantileForecaster
from slocast.schema import DomainSpec, Prediction

__all__ = [
    "FORMAT_VERSION",
    "ModelBundle",
    "load_bundle",
    "save_bundle",
    "sha256_file",
    "validate_frame",
    "validate_records",
]

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_LIBRARIES = (
    "slocast", "numpy", "pandas", "lightgbm", "xgboost-cpu", "xgboost", "catboost",
    "treelite", "tl2cgen", "lleaves", "llvmlite",
)  # fmt: skip


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _library_versions() -> dict[str, str]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


def save_bundle(
    forecaster: CalibratedForecaster,
    out_dir: Path,
    provenance: Mapping[str, object],
    metrics: Mapping[str, object],
    compile_models: bool = False,
    previous: ModelBundle | None = None,
) -> str:
    """Write a bundle atomically (a temp dir renamed into place); return its version id.

    With ``compile_models`` (and a toolchain: see :func:`can_compile`) the GBMs are also
    compiled to shared libraries that :func:`load_bundle` prefers over the native files. When
    ``previous`` holds the very same trees (equal sha256 of the native files, e.g. a bundle
    that only republishes calibration), its libraries are copied instead of compiled again.
    """
    base = forecaster.base
    if base.pipeline is None or base.point_model is None or base.upper_model is None:
        raise BundleError("cannot save a forecaster that was never fitted")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BundleError(
            f"bundle directory {out_dir} exists and is not empty (bundles are immutable)"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out_dir.parent))
    suffix = FAMILIES[base.family].suffix
    _write_json(staging / "features.json", base.pipeline.to_dict())
    base.point_model.save(staging / f"model_point{suffix}")
    base.upper_model.save(staging / f"model_upper{suffix}")
    compiled: dict[str, str] = {}
    engine = compile_engine(base.family) if compile_models else None
    if engine is not None:
        libraries = {n: f"{n}{LIBRARY_SUFFIX[engine]}" for n in ("model_point", "model_upper")}
        built = [
            _reuse_library(previous, engine, staging / f"{n}{suffix}", staging / f)
            or compile_model(staging / f"{n}{suffix}", base.family, staging / f, engine)
            for n, f in libraries.items()
        ]
        if all(built):
            compiled = libraries
        else:
            for library in libraries.values():
                (staging / library).unlink(missing_ok=True)
    _write_json(
        staging / "calibration.json",
        {
            "scores": forecaster.calibrator.state(),
            "min_group_size": forecaster.calibrator.min_group_size,
            "window": forecaster.calibrator.window,
            "decay": forecaster.calibrator.decay,
            "level_edges": forecaster.calibrator.level_edges.tolist(),
            "aci": None if forecaster.aci is None else forecaster.aci.state(),
            "aci_params": None if forecaster.aci is None else forecaster.aci.params(),
            "use_request": forecaster.use_request,
            "request_until": forecaster.request_until,
            # Readers from before the grace read only this.
            "request_is_cap": forecaster.request_is_cap,
            "request_grace": forecaster.request_grace,
            "headroom": forecaster.headroom,
            "known_per_group": dict(forecaster.known_per_group),
            "unseen_share": forecaster.scale_unseen,
            "unseen": forecaster.unseen.state(),
            "history": None if forecaster.history is None else forecaster.history.state(),
        },
    )
    _write_json(staging / "metrics.json", dict(metrics))
    files = {p.name: sha256_file(p) for p in sorted(staging.iterdir())}
    created = datetime.now(UTC)
    content_hash = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    version = f"{forecaster.spec.name}-{created:%Y%m%dT%H%M%S}-{content_hash[:8]}"
    _write_json(
        staging / MANIFEST,
        {
            "format_version": FORMAT_VERSION,
            "version": version,
            "created_at": created.isoformat(),
            "domain": forecaster.spec.to_dict(),
            "coverage": forecaster.coverage,
            "family": base.family,
            "gbm_config": base.config.__dict__,
            "feature_schema_hash": base.pipeline.schema_hash(),
            "compiled": compiled,
            "compiled_engine": engine if compiled else None,
            "compiled_target": engine_target(engine) if engine and compiled else None,
            "libraries": _library_versions(),
            "provenance": dict(provenance),
            "files": files,
        },
    )
    if out_dir.exists():
        out_dir.rmdir()
    os.replace(staging, out_dir)
    return version


def _reuse_library(previous: ModelBundle | None, engine: str, model: Path, library: Path) -> bool:
    """Copy ``previous``'s compiled library for ``model`` when ``engine`` built it from the same
    file."""
    if previous is None or _engine(previous.manifest) != engine:
        return False
    compiled = previous.manifest.get("compiled") or {}
    source = compiled.get(model.stem)
    recorded = previous.manifest["files"].get(model.name)
    if source is None or recorded != sha256_file(model):
        return False
    shutil.copyfile(previous.path / source, library)
    return True


def created_at(manifest: Mapping[str, Any]) -> datetime:
    """When a bundle was written (by the trainer or ``slocast train``), UTC, from its manifest."""
    return datetime.fromisoformat(str(manifest["created_at"]))


@dataclass(frozen=True)
class ModelBundle:
    """A verified, loaded bundle, ready to predict."""

    path: Path
    manifest: dict[str, Any]
    forecaster: CalibratedForecaster
    engine: str = "native"  # "lleaves" or "tl2cgen" when compiled models serve

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def spec(self) -> DomainSpec:
        return self.forecaster.spec

    @property
    def coverage(self) -> float:
        return float(self.manifest["coverage"])

    @property
    def created_at(self) -> datetime:
        return created_at(self.manifest)

    def predict_frame(self, frame: pd.DataFrame, coverage: float | None = None) -> Bounds:
        """Bounds for a frame of jobs (stateless: nothing is kept for later ``observe``)."""
        forecaster = self.forecaster
        assert forecaster.base.pipeline is not None
        request = self.spec.user_request
        requested = frame[request].to_numpy(np.float64) if request else None
        X = forecaster.base.pipeline.transform(frame)
        return forecaster.bounds(X, group_keys(frame, self.spec), requested, coverage)[0]

    def predict_records(
        self,
        records: Sequence[Mapping[str, object]],
        coverage: float | None = None,
        validated: bool = False,
    ) -> list[Prediction]:
        """Predict for job dicts; unless ``validated``, check them first (InputError names them)."""
        if not validated:
            validate_records(records, self.spec)
        bounds = self.predict_matrix(records, coverage)
        promised = self.coverage if coverage is None else coverage
        return [
            Prediction(point=p, upper=u, coverage=promised, model_version=self.version)
            for p, u in zip(bounds.point.tolist(), bounds.upper.tolist(), strict=True)
        ]

    def predict_matrix(
        self,
        records: Sequence[Mapping[str, object]],
        coverage: float | None = None,
        upper_only: bool = False,
    ) -> Bounds:
        """Vectorised bounds for validated job dicts (the serving hot path: no DataFrame);
        ``upper_only`` leaves the point out (NaN)."""
        forecaster = self.forecaster
        assert forecaster.base.pipeline is not None
        X = forecaster.base.pipeline.transform_records(records)
        request = self.spec.user_request
        groups = record_group_keys(records, self.spec)
        requested = (
            np.array([float(r.get(request) or np.nan) for r in records]) if request else None  # type: ignore[arg-type]
        )
        return forecaster.bounds(X, groups, requested, coverage, upper_only)[0]

    def predict_columns(
        self,
        numeric: Mapping[str, np.ndarray],
        categorical: Mapping[str, Sequence[object]],
        rows: int,
        coverage: float | None = None,
        upper_only: bool = False,
    ) -> Bounds:
        """Vectorised bounds for jobs sent as columns (one value per job; numbers as float
        arrays, NaN missing; categories as sequences, None missing): large batches skip the
        per-job dicts. A column not sent is missing for every job."""
        forecaster = self.forecaster
        assert forecaster.base.pipeline is not None
        X = forecaster.base.pipeline.transform_columns(numeric, categorical, rows)
        request = self.spec.user_request
        requested = numeric.get(request) if request else None
        if request and requested is None:
            requested = np.full(rows, np.nan)
        groups = column_group_keys(categorical, self.spec, rows)
        return forecaster.bounds(X, groups, requested, coverage, upper_only)[0]


def validate_records(
    records: Sequence[Mapping[str, object]],
    spec: DomainSpec,
    lines: Sequence[int] | None = None,
) -> None:
    """Each job a dict with every required input; numbers where numbers are due, in the
    domain's range (NaN or None: missing).

    Raises InputError naming the item index and field, e.g. ``[3].input_token_length``; with
    ``lines`` (each record's line in an input file) the line instead, ``line 5.input_token_length``.
    """
    numbers = set(spec.numbers)
    optional = set(spec.optional)
    # (column, holds a number, may be left out), worked out once for every job.
    checks = [(c, c in numbers, c in optional) for c in dict.fromkeys(spec.features + spec.numbers)]
    low, high = spec.number_range

    def where(index: int) -> tuple[str, str]:  # (the job in a message, the job in a field)
        if lines is None:
            return f"item {index}", f"[{index}]"
        return f"line {lines[index]}", f"line {lines[index]}"

    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            job, at = where(index)
            raise InputError(f"{job} is not an object", field=at)
        for column, numeric, may_lack in checks:
            value = record.get(column, _ABSENT)
            if value is _ABSENT:
                if may_lack:
                    continue
                job, at = where(index)
                raise InputError(f"{job} is missing {column!r}", field=f"{at}.{column}")
            if value is None:
                continue
            if not numeric:
                # A category is a name; an id sent as a number names it too (user 12).
                if isinstance(value, bool) or not isinstance(value, str | int | float):
                    job, at = where(index)
                    raise InputError(
                        f"{job}: {column!r} must be a name, got {value!r}", field=f"{at}.{column}"
                    )
            elif isinstance(value, bool) or not isinstance(value, int | float):
                job, at = where(index)
                raise InputError(
                    f"{job}: {column!r} must be a number, got {value!r}", field=f"{at}.{column}"
                )
            # NaN is a missing value (it compares false to both ends), not an out-of-range one.
            elif value < low or value > high:
                job, at = where(index)
                raise InputError(
                    f"{job}: {column!r} must be in {spec.number_range_text}, got {value!r}",
                    field=f"{at}.{column}",
                )


def validate_frame(frame: pd.DataFrame, spec: DomainSpec) -> None:
    """:func:`validate_records` for a frame, column by column: each numeric input it holds is
    a number in the domain's range where it is not missing. A text such as ``"4 GB"`` or
    ``"x"`` would otherwise be read as missing without a word.

    Raises InputError naming the row (its position) and column, e.g. ``[3].memory``.
    """
    low, high = spec.number_range
    for column in dict.fromkeys(spec.numbers):
        if column not in frame.columns:
            continue
        given = frame[column]
        if pd.api.types.is_bool_dtype(given):
            raise InputError(f"column {column!r} must hold numbers, not booleans", field=column)
        values = pd.to_numeric(given, errors="coerce").to_numpy(np.float64)
        not_number = np.isnan(values) & given.notna().to_numpy()
        # NaN is a missing value (it compares false to both ends), not an out-of-range one.
        out_of_range = (values < low) | (values > high)
        for bad, what in ((not_number, "a number"), (out_of_range, f"in {spec.number_range_text}")):
            if bad.any():
                row = int(np.argmax(bad))
                value = given.iloc[row]
                value = value.item() if isinstance(value, np.generic) else value
                raise InputError(
                    f"row {row}: {column!r} must be {what}, got {value!r}",
                    field=f"[{row}].{column}",
                )


_ABSENT = object()


def _engine(manifest: Mapping[str, Any]) -> str:
    # Bundles from before lleaves name no engine: TL2cgen built them.
    return str(manifest.get("compiled_engine") or "tl2cgen")


def _load_compiled(
    path: Path, manifest: Mapping[str, Any], suffix: str, threads: int
) -> tuple[Regressor, Regressor]:
    """The bundle's compiled point and upper models; OSError when they cannot run here."""
    engine, target = _engine(manifest), manifest.get("compiled_target")
    if target is not None and target != engine_target(engine):
        raise OSError(f"{engine} code built for {target}, this machine is {engine_target(engine)}")
    point, upper = (
        load_compiled(path / manifest["compiled"][name], engine, path / f"{name}{suffix}", threads)
        for name in ("model_point", "model_upper")
    )
    return point, upper


def load_bundle(path: Path, prefer_compiled: bool = True, threads: int = 0) -> ModelBundle:
    """Load and verify a bundle (hashes, feature schema); a bad bundle raises BundleError.

    Compiled models are used when present and loadable here, else the native ones; ``threads``
    is how many a compiled model's batch prediction uses (0: every core).
    """
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{path} is not a slocast bundle (no {MANIFEST})", source=str(path))
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"corrupt manifest: {exc}", source=str(manifest_path)) from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"bundle format {manifest.get('format_version')} is not supported "
            f"(this slocast reads format {FORMAT_VERSION})",
            field="format_version",
            source=str(path),
        )
    for name, expected in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"bundle file {name} is missing", field=name, source=str(path))
        if sha256_file(file) != expected:
            raise BundleError(
                f"bundle file {name} does not match its sha256", field=name, source=str(path)
            )
    pipeline = FeaturePipeline.from_dict(json.loads((path / "features.json").read_text()))
    if pipeline.schema_hash() != manifest["feature_schema_hash"]:
        raise BundleError("feature schema does not match the manifest", field="features.json")
    spec = DomainSpec.from_dict(manifest["domain"])
    family, coverage = str(manifest["family"]), float(manifest["coverage"])
    suffix = FAMILIES[family].suffix
    base = QuantileForecaster(spec, coverage, family)
    base.pipeline = pipeline
    base.point_model = load_regressor(family, path / f"model_point{suffix}", 0.5)
    base.upper_model = load_regressor(family, path / f"model_upper{suffix}", coverage)
    engine = "native"
    compiled = manifest.get("compiled") or {}
    if prefer_compiled and compiled:
        try:
            models = _load_compiled(path, manifest, suffix, threads)
        except (OSError, ImportError) as exc:
            # Built on another machine or toolchain: the native models serve, same predictions.
            log.warning(
                "compiled models in %s unusable here (%s); serving native models", path, exc
            )
        else:
            (base.point_model, base.upper_model), engine = models, _engine(manifest)
    cal = json.loads((path / "calibration.json").read_text())
    aci = None
    if cal["aci"] is not None:
        aci = AdaptiveConformal.from_state(coverage, cal["aci_params"], cal["aci"])
    # Bundles from before the history expert have none.
    history = HistoryExpert.from_state(cal["history"], coverage) if cal.get("history") else None
    forecaster = CalibratedForecaster(
        base,
        ConformalUpper.from_state(
            cal["scores"],
            int(cal["min_group_size"]),
            int(cal["window"]),
            float(cal.get("decay", 1.0)),  # bundles from before decay: unweighted windows
            cal.get("level_edges", ()),
        ),
        aci,
        use_request=bool(cal["use_request"]),
        # Bundles from before thin groups fell back: only unseen groups did.
        request_until=int(cal.get("request_until", 1)),
        history=history,
        # Bundles from before it serve unseen groups their whole request.
        unseen_share=bool(cal.get("unseen_share", False)),
    )
    if cal.get("unseen"):
        forecaster.unseen = UnseenShare.from_state(cal["unseen"], forecaster.spec.group_path)
    # Bundles from before the grace: capped at the request only where it was a hard limit.
    grace = cal.get("request_grace", 0.0 if cal["request_is_cap"] else None)
    forecaster.request_grace = None if grace is None else float(grace)
    forecaster.headroom = float(cal.get("headroom", 0.0))  # bundles from before it: none
    forecaster.known_per_group = Counter(
        {str(k): int(v) for k, v in cal["known_per_group"].items()}
    )
    forecaster.mark_conformalized()
    return ModelBundle(path, manifest, forecaster, engine)
