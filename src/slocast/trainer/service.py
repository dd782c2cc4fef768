"""The continuous trainer: durable ingest, retraining in the background, gated publishing.

Each retrain of a domain: read the stored training rows (oldest first) -> fit the quantile GBM
on the older part and conformalize on the newest part -> measure on the held-out rows ->
**gate**: publish only if the coverage error is not worse than the current bundle's (beyond
one binomial standard error) and, at equal error, the bound is not wider. Every decision is
recorded with its reasons.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slocast.artifacts import ModelBundle, load_bundle, save_bundle, validate_records
from slocast.artifacts.registry import BundleRegistry
from slocast.calibration.forecaster import CalibratedForecaster, CalibrationParams, fit_on_history
from slocast.errors import InputError
from slocast.models import GBMConfig, QuantileForecaster
from slocast.models.base import Bounds
from slocast.schema import (
    MAX_NUMBER,
    NON_NEGATIVE_RANGE_TEXT,
    SIGNED_RANGE_TEXT,
    DomainSpec,
    get_domain,
)
from slocast.store import SampleStore, bucket_of, is_heldout

__all__ = ["QUEUE_GATE", "SERVED_BOUND", "GateDecision", "Trainer", "TrainerConfig", "gate"]

QUEUE_GATE = "num_request_waiting"  # the feature llm-d's ensemble mode splits on
# A row may carry the upper bound its job was served (at the promised coverage). The coverage
# the trainer tracks and the misses ACI follows are then those of the bounds jobs really got,
# which may be a sync or more behind the trainer's live model; rows without it are judged by
# the bound the live model gives them.
SERVED_BOUND = "served_upper"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainerConfig:
    home: Path
    coverage: float = 0.9
    retrain_interval_s: float = 1.0
    # The live calibration is republished as outcomes arrive, at most once per this: a fit
    # every minute is cheap to configure, a bound a minute behind drift is not.
    recalibrate_interval_s: float = 1.0
    min_samples: int = 100
    test_share: float = 0.1
    family: str = "lightgbm"
    n_estimators: int = 200
    threads: int = GBMConfig.threads  # per fit: the model default unless told
    keep_bundles: int = 5
    compile_models: bool = False
    gate_rows: int = 200
    gate_min_rows: int = 30
    calibration: CalibrationParams = CalibrationParams()
    # llm-d's LATENCY_ENSEMBLE_MODE: one model per side of the queue gate where it applies.
    ensemble_mode: bool = False
    # Retrain at once (not at the next interval) when the served bounds covered less than the
    # promise minus this over the last ``alarm_window`` outcomes.
    coverage_alarm: float = 0.05
    alarm_window: int = 200


@dataclass(frozen=True)
class GateDecision:
    domain: str
    version: str
    accepted: bool
    reason: str
    train_rows: int
    heldout_rows: int
    coverage_new: float | None
    coverage_current: float | None
    width_new: float | None
    width_current: float | None
    seconds: float
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _measure(
    bundle_or_forecaster: ModelBundle | CalibratedForecaster, heldout: pd.DataFrame, target: str
) -> tuple[float, float]:
    bounds = (
        bundle_or_forecaster.predict(heldout)
        if isinstance(bundle_or_forecaster, CalibratedForecaster)
        else bundle_or_forecaster.predict_frame(heldout)
    )
    y = heldout[target].to_numpy(np.float64)
    return float(np.mean(y <= bounds.upper)), float(np.mean(bounds.upper))


def gate(
    coverage: float,
    n: int,
    new: tuple[float, float],
    current: tuple[float, float] | None,
) -> tuple[bool, str]:
    """Accept a new model over the current one? ``new``/``current`` = (coverage, mean bound).

    >>> gate(0.9, 400, (0.90, 10.0), (0.80, 8.0))
    (True, 'coverage error 0.000 better than 0.100')
    >>> gate(0.9, 400, (0.80, 8.0), (0.90, 10.0))
    (False, 'coverage error 0.100 worse than 0.000')
    >>> gate(0.9, 400, (0.905, 12.0), (0.90, 10.0))
    (False, 'same coverage error within 0.015, but wider bound 12 > 10')
    """
    if current is None:
        return True, "first model for this domain"
    error_new, error_current = abs(new[0] - coverage), abs(current[0] - coverage)
    tolerance = math.sqrt(coverage * (1 - coverage) / max(n, 1))
    if error_new < error_current - tolerance:
        return True, f"coverage error {error_new:.3f} better than {error_current:.3f}"
    if error_new > error_current + tolerance:
        return False, f"coverage error {error_new:.3f} worse than {error_current:.3f}"
    same = f"same coverage error within {tolerance:.3f}"
    if new[1] > current[1] * 1.0001:
        return False, f"{same}, but wider bound {new[1]:.4g} > {current[1]:.4g}"
    return True, f"{same}, bound {new[1]:.4g} <= {current[1]:.4g}"


def _fitted_up_to(bundle: ModelBundle | None) -> int:
    """Id of the newest stored row the bundle's models were fitted on (0 without a bundle)."""
    if bundle is None:
        return 0
    return int(bundle.manifest["provenance"].get("rows_up_to_id", 0))


def _check_stored_values(index: int, row: Mapping[str, Any], clocks: Sequence[str]) -> None:
    """A stored row is flat: every field (its extra ones too) a number, a name, a flag or
    null; the clocks that order and split rows numbers or null. Every number fits the store
    and the held-out hash; NaN stands for a missing input, except in the clocks."""
    for key, value in row.items():
        kind = type(value)
        # Numbers first, by exact type: nearly every field of a row is one.
        if kind is float or kind is int or (kind is not bool and isinstance(value, int | float)):
            if value != value and key not in clocks:
                continue
            if not -MAX_NUMBER <= value <= MAX_NUMBER:
                raise InputError(
                    f"item {index}: {key!r} must be a finite number in {SIGNED_RANGE_TEXT}, "
                    f"got {value!r}",
                    field=f"[{index}].{key}",
                )
        elif value is None:
            continue
        elif key in clocks:
            raise InputError(
                f"item {index}: {key!r} must be a number (seconds) or null, got {value!r}",
                field=f"[{index}].{key}",
            )
        elif kind is not str and kind is not bool:
            raise InputError(
                f"item {index}: {key!r} must be a number, a string, a boolean or null, "
                f"got {kind.__name__}",
                field=f"[{index}].{key}",
            )


def _check_non_negative(index: int, row: Mapping[str, Any], column: str) -> None:
    value = row.get(column)
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not 0 <= value <= MAX_NUMBER
    ):
        raise InputError(
            f"item {index}: {column!r} must be a number in {NON_NEGATIVE_RANGE_TEXT}",
            field=f"[{index}].{column}",
        )


def _frame(rows: Sequence[Mapping[str, Any]], spec: DomainSpec) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(list(rows))
    # Rows without clocks are ordered by arrival; an outcome is known once it is stored.
    if spec.time not in frame or frame[spec.time].isna().all():
        frame[spec.time] = frame["_id"].astype(float)
    if spec.known_at not in frame or frame[spec.known_at].isna().all():
        frame[spec.known_at] = frame[spec.time]
    for column in spec.features:
        if column not in frame:
            frame[column] = np.nan
    return frame


def _follow(
    forecaster: CalibratedForecaster, rows: Sequence[Mapping[str, Any]]
) -> tuple[np.ndarray, int]:
    """Feed one ingest call's outcomes to a model as they come live: the bounds it gives them
    (its score windows learn from those), then their outcomes. ACI follows the misses of the
    bounds the jobs were served (:data:`SERVED_BOUND`) where the rows say, else of its own.
    Returns which of the served bounds covered, and how many rows said what they were served."""
    frame = _frame([{**r, "_id": 0} for r in rows], forecaster.spec)
    own = forecaster.predict(frame)
    reported = np.array([_number_or_nan(r.get(SERVED_BOUND)) for r in rows], np.float64)
    said = ~np.isnan(reported)
    served = np.where(said, reported, own.upper)
    forecaster.observe(frame, Bounds(own.point, served))
    covered = np.asarray(frame[forecaster.spec.target].to_numpy() <= served)
    return covered, int(said.sum())


def _number_or_nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


class Trainer:
    def __init__(self, store: SampleStore, config: TrainerConfig) -> None:
        self.store = store
        self.config = config
        self.registry = BundleRegistry(config.home / "bundles", config.keep_bundles)
        self.decisions: list[GateDecision] = []
        self.last_trained_id: dict[str, int] = {}
        self.last_retrain: dict[str, str] = {}
        self._lock = threading.RLock()
        # Held while a batch is stored and queued: whatever a retrain reads as stored has been
        # queued, so its outcomes can be told apart from those that come after.
        self._ingest_lock = threading.Lock()
        self._outcomes: deque[tuple[str, Sequence[Mapping[str, Any]]]] = deque()
        # Per domain being retrained: the outcomes followed since its fit read the store, for
        # the new model to follow too before it serves (see retrain).
        self._since_fit: dict[str, list[Sequence[Mapping[str, Any]]]] = {}
        self.live: dict[str, CalibratedForecaster] = {}
        self.recalibrate_pending: set[str] = set()
        for domain in self.registry.domains():
            bundle = self.current_bundle(domain)
            if bundle is not None:
                self.live[domain] = load_bundle(bundle.path, prefer_compiled=False).forecaster
                # A restart is not new data: retrain once rows arrive past what it learned.
                self.last_trained_id[domain] = _fitted_up_to(bundle)
        self._stop = threading.Event()
        self._wake = threading.Event()  # an early retrain is wanted
        self._outcomes_arrived = threading.Event()  # calibration has something to follow
        self.recent_hits: dict[str, deque[bool]] = {}
        # Outcomes followed per (domain, "served" | "live"): judged by the bound their row says
        # the job was served, or by the live model's (the rolling coverage mixes the two).
        self.outcomes_judged: Counter[tuple[str, str]] = Counter()
        self._alarmed: set[str] = set()
        self.early_retrains: Counter[str] = Counter()
        self._thread: threading.Thread | None = None
        self._recalibrator: threading.Thread | None = None
        # What the background loop retrains (set by start); rows of other domains are stored.
        self.domains: tuple[str, ...] = ()

    # -- ingest ------------------------------------------------------------------------------
    def ingest(
        self, domain: str, rows: Sequence[Mapping[str, Any]], validated: bool = False
    ) -> int:
        """Store rows durably (committed before returning); returns how many.

        Nothing of a batch is stored unless every row is good: each row is flat, and each
        input it carries is of the type and in the range a prediction accepts, though any may
        be missing (a model learns from rows with gaps). ``validated``: the inputs were
        checked already (the llm-d route's wire model); the outcome is checked all the same.
        """
        spec = get_domain(domain)
        if not validated:
            validate_records(rows, replace(spec, optional=spec.features + spec.numbers))
        for index, row in enumerate(rows):
            _check_non_negative(index, row, spec.target)
            if row.get(SERVED_BOUND) is not None:
                _check_non_negative(index, row, SERVED_BOUND)
            if not validated:  # a wire model's rows carry its fields only, all checked
                _check_stored_values(index, row, (spec.time, spec.known_at))
        buckets = [bucket_of(domain, r, spec.group, spec.time) for r in rows]
        heldout = [is_heldout(r, self.config.test_share) for r in rows]
        with self._ingest_lock:
            stored = self.store.add(domain, rows, buckets, heldout)
            self._outcomes.append((domain, rows))
        self._apply_outcomes(blocking=False)
        self._outcomes_arrived.set()
        return stored

    def _apply_outcomes(self, blocking: bool = True) -> None:
        """Feed queued outcomes to the live models (ACI, score windows, coverage alarm).

        Ingest only tries: while a retrain holds the lock its outcomes wait here, and the
        retrain thread applies them when it is done -- an acknowledgement never waits for a fit.
        """
        if not self._lock.acquire(blocking=blocking):
            return
        try:
            while self._outcomes:
                self._track(*self._outcomes.popleft())
        finally:
            self._lock.release()

    def _track(self, domain: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Feed outcomes to the live copy of the current bundle (ACI, score windows) and to the
        coverage record: each job judged by the bound its row says it was served
        (:data:`SERVED_BOUND`), else by the one the live copy gives it."""
        with self._lock:
            since_fit = self._since_fit.get(domain)
            if since_fit is not None:
                since_fit.append(rows)
            live = self.live.get(domain)
            if live is None:
                return
            covered, reported = _follow(live, rows)
            self.outcomes_judged[domain, "served"] += reported
            self.outcomes_judged[domain, "live"] += len(rows) - reported
            self.recalibrate_pending.add(domain)
            hits = self.recent_hits.setdefault(domain, deque(maxlen=self.config.alarm_window))
            hits.extend(covered.tolist())
            alarm = self.coverage_alarm(domain)
            if alarm and domain not in self._alarmed:  # said once per episode, not per batch
                observed = sum(hits) / len(hits)
                log.warning(
                    "coverage alarm on %s: %.3f served vs %.3f promised; retraining now",
                    domain,
                    observed,
                    self.config.coverage,
                    extra={"domain": domain, "observed_coverage": observed},
                )
            if alarm:
                self._alarmed.add(domain)
                self._wake.set()
            else:
                self._alarmed.discard(domain)

    def coverage_alarm(self, domain: str) -> bool:
        """The served bounds missed the promise by more than ``coverage_alarm`` lately."""
        hits = self.recent_hits.get(domain)
        if hits is None or len(hits) < min(50, self.config.alarm_window):
            return False
        return sum(hits) / len(hits) < self.config.coverage - self.config.coverage_alarm

    def _write(
        self,
        domain: str,
        forecaster: CalibratedForecaster,
        provenance: dict[str, Any],
        metrics: dict[str, Any],
        previous: ModelBundle | None = None,
    ) -> tuple[Path, str]:
        """Write a bundle aside (the slow part: files, compiling); nothing is published yet."""
        staging = self.registry.staging(domain, f"{time.time_ns()}")
        version = save_bundle(
            forecaster, staging, provenance, metrics, self.config.compile_models, previous
        )
        return staging, version

    def _publish(self, domain: str, staging: Path, version: str) -> str:
        """Under the lock: make a written bundle current and restart the live copy from it."""
        self.registry.publish(domain, staging, version)
        # The live copy restarts from what was just published (native models: it is re-saved).
        self.live[domain] = load_bundle(
            self.registry.path(domain, version), prefer_compiled=False
        ).forecaster
        return version

    def _fit_window(self, domain: str) -> int:
        """Open a retrain's record of outcomes that arrive during its fit; returns the id of
        the newest row the fit may read (every one of them already followed by the live copy,
        every later one recorded)."""
        with self._lock, self._ingest_lock:
            self._apply_outcomes()
            latest = self.store.latest_id(domain)  # a store that is down leaves no record open
            self._since_fit[domain] = []
            return latest

    def _catch_up(self, domain: str, forecaster: CalibratedForecaster) -> int:
        """Feed a new model the outcomes that arrived during its fit, as the live copy followed
        them (ACI, score windows); returns how many batches. Those recorded later are kept for
        the next call. A retrain takes a second or more, and a model published without them
        would serve a calibration that far behind drift."""
        with self._lock:
            batches = self._since_fit.get(domain, [])
            self._since_fit[domain] = []
        for rows in batches:
            _follow(forecaster, rows)
        return len(batches)

    def recalibrate(self, domain: str) -> str | None:
        """Publish the live calibration (ACI level, score windows) with the current models.

        Between retrains this is how the served bounds follow drift: same trees, offsets moved
        by the outcomes that arrived since. Returns the new version, if one was published.
        """
        with self._lock:
            live = self.live.get(domain)
            if live is None or domain not in self.recalibrate_pending:
                return None
            self.recalibrate_pending.discard(domain)
            coverage = live.aci.observed_coverage if live.aci is not None else None
            current = self.current_bundle(domain)
            provenance = {"source": "trainer", "recalibrated": True,
                          "rows_up_to_id": _fitted_up_to(current)}  # fmt: skip
            # Same trees as the current bundle: its compiled libraries are reused, not rebuilt.
            written = self._write(domain, live, provenance, {"rolling_coverage": coverage}, current)
            return self._publish(domain, *written)

    # -- models ------------------------------------------------------------------------------
    def current_bundle(self, domain: str) -> ModelBundle | None:
        version = self.registry.current(domain)
        return None if version is None else load_bundle(self.registry.path(domain, version))

    def due(self, domain: str) -> bool:
        latest = self.store.latest_id(domain)
        if latest <= self.last_trained_id.get(domain, 0):
            return False
        return self.store.counts(domain).train >= self.config.min_samples

    def retrain(self, domain: str) -> GateDecision:
        """Fit, calibrate, measure, gate and (if accepted) publish one domain's model.

        The fit reads the store and the published bundles only, so it runs without the lock:
        outcomes keep reaching the live models and their calibration keeps being republished
        meanwhile. The lock is taken to publish. The new model learns from the rows stored when
        the retrain began and follows those that came since before it serves, as the live model
        it replaces did (ACI level, score windows).
        """
        started = time.perf_counter()
        latest = self._fit_window(domain)
        try:
            return self._retrain(domain, latest, started)
        finally:
            with self._lock:
                self._since_fit.pop(domain, None)

    def _retrain(self, domain: str, latest: int, started: float) -> GateDecision:
        builtin = get_domain(domain)
        train = _frame(self.store.rows(domain, heldout=False, up_to_id=latest), builtin)
        constant = {c for c in builtin.features if train[c].nunique(dropna=True) <= 1}
        spec = builtin.without_features(constant)
        # Gate on held-out rows newer than everything the current model learned from -- the
        # coverage promise is about data after the training window, and under drift the
        # model to publish is the one that is right about now. Too few: the newest ones.
        current = self.current_bundle(domain)
        all_heldout = self.store.rows(domain, heldout=True)
        cutoff = _fitted_up_to(current)
        heldout_rows = [r for r in all_heldout if r["_id"] > cutoff]
        if len(heldout_rows) < self.config.gate_min_rows:
            heldout_rows = all_heldout[-self.config.gate_rows :]
        gated = self.config.ensemble_mode and QUEUE_GATE in spec.features
        base = QuantileForecaster(
            spec,
            self.config.coverage,
            "gated" if gated else self.config.family,
            GBMConfig(
                n_estimators=self.config.n_estimators,
                threads=self.config.threads,
                gate_feature=QUEUE_GATE if gated else "",
            ),
        )
        # The newest rows replay into ACI as they came live: one round per ingest call.
        forecaster, n_train, _ = fit_on_history(
            train, base, self.config.calibration, 0.2, rounds="_received_at"
        )
        new_stats = current_stats = None
        if heldout_rows:
            heldout = _frame(heldout_rows, builtin)
            new_stats = _measure(forecaster, heldout, spec.target)
            if current is not None:
                current_stats = _measure(current, heldout, spec.target)
        if current is None:
            accepted, reason = True, "first model for this domain"
        elif new_stats is None or current_stats is None:
            accepted, reason = True, "no held-out rows to compare on: newer data wins"
        else:
            accepted, reason = gate(
                self.config.coverage, len(heldout_rows), new_stats, current_stats
            )
        written = None
        if accepted:  # written (and compiled) before the lock is taken
            self._catch_up(domain, forecaster)
            written = self._write(
                domain,
                forecaster,
                {"source": "trainer", "rows_up_to_id": latest},
                {
                    "train_rows": n_train,
                    "heldout_rows": len(heldout_rows),
                    "heldout_coverage": new_stats[0] if new_stats else None,
                },
            )
        with self._lock:
            version = ""
            if written is not None:
                self._apply_outcomes()
                version = self._publish(domain, *written)
                # What came while it was written: republished at the next recalibration.
                if self._catch_up(domain, self.live[domain]):
                    self.recalibrate_pending.add(domain)
                else:
                    self.recalibrate_pending.discard(domain)
                self.last_retrain[domain] = datetime.now(UTC).isoformat()
            self.last_trained_id[domain] = latest
            decision = GateDecision(
                domain,
                version,
                accepted,
                reason,
                n_train,
                len(heldout_rows),
                new_stats[0] if new_stats else None,
                current_stats[0] if current_stats else None,
                new_stats[1] if new_stats else None,
                current_stats[1] if current_stats else None,
                time.perf_counter() - started,
            )
            self.decisions.append(decision)
            log.info(
                "retrain of %s %s: %s",
                domain,
                "accepted" if accepted else "rejected",
                reason,
                extra={"event": "retrain", **decision.to_dict()},
            )
            return decision

    # -- background loop -----------------------------------------------------------------------
    def run_once(self, domains: Sequence[str]) -> list[GateDecision]:
        """Retrain the domains that are due; recalibrate the others that saw new outcomes.

        A domain whose retrain fails is logged and tried again next time; the others go on
        (one domain's bad fit must not stall every domain listed after it)."""
        self._apply_outcomes()
        decisions = []
        for domain in domains:
            try:
                if self.due(domain):
                    if self.coverage_alarm(domain):
                        self.early_retrains[domain] += 1
                    decision = self.retrain(domain)
                    if decision.accepted:
                        self.recent_hits.pop(domain, None)  # a new model starts a new record
                    decisions.append(decision)
                # Accepted retrains clear the pending flag; a rejected one leaves the live
                # model serving, so its calibration still moves with the new outcomes.
                self.recalibrate(domain)
            except Exception:
                log.exception("retrain of %s failed; will retry", domain)
        self._apply_outcomes()  # what arrived while this ran
        return decisions

    def start(self, domains: Sequence[str]) -> None:
        """Two background threads: retraining every ``retrain_interval_s``, and republishing
        calibration when outcomes arrive (at most once per ``recalibrate_interval_s``), which
        must not wait for a fit to follow drift."""
        self.domains = tuple(domains)

        def loop() -> None:
            while not self._stop.is_set():
                # Sleep the retrain interval, or less when a coverage alarm wakes us.
                self._wake.wait(self.config.retrain_interval_s)
                self._wake.clear()
                if self._stop.is_set():
                    break
                try:
                    self.run_once(domains)
                except Exception:
                    log.exception("retrain failed; will retry")

        def recalibrate_loop() -> None:
            # Outcomes are followed as they arrive, at most once per interval: a quiet trainer
            # publishes nothing, a busy one one bundle per interval.
            while not self._stop.is_set():
                self._outcomes_arrived.wait()
                self._outcomes_arrived.clear()
                if self._stop.is_set():
                    break
                try:
                    self._apply_outcomes()
                    for domain in domains:
                        self.recalibrate(domain)
                except Exception:
                    log.exception("recalibration failed; will retry")
                    self._outcomes_arrived.set()
                self._stop.wait(self.config.recalibrate_interval_s)

        self._thread = threading.Thread(target=loop, name="slocast-retrain", daemon=True)
        self._thread.start()
        self._recalibrator = threading.Thread(
            target=recalibrate_loop, name="slocast-recalibrate", daemon=True
        )
        self._recalibrator.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._outcomes_arrived.set()
        for thread in (self._thread, self._recalibrator):
            if thread is not None:
                thread.join(timeout=30)
