"""The one typed settings object: env vars ``SLOCAST_*`` override an optional TOML file.

Only the edges (``slocast.cli``, test fixtures) build a :class:`Settings`; library code takes plain
arguments. The TOML file is ``slocast.toml`` in the working directory, or the path given in
``SLOCAST_CONFIG``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from slocast.errors import ConfigError

__all__ = ["DEFAULT_MAX_BODY_BYTES", "Settings", "load_settings"]

ModelFamily = Literal["lightgbm", "xgboost", "catboost"]

# 10,000 llm-d rows are about 3 MB of JSON; the default request-body cap leaves ten times that.
DEFAULT_MAX_BODY_BYTES = 32 * 2**20


def _alias(field: str, llmd_name: str) -> AliasChoices:
    """Accept ``SLOCAST_<FIELD>``, llm-d's own variable name, and the field name (TOML/kwargs)."""
    return AliasChoices(f"SLOCAST_{field.upper()}", llmd_name, field)


STORE_SCHEMES = ("sqlite://", "postgresql://", "postgresql+psycopg://")
CACHE_SCHEMES = ("redis://", "rediss://", "unix://")
TRAINER_SCHEMES = ("http://", "https://")


def url_with_scheme(url: str | None, schemes: tuple[str, ...]) -> str | None:
    """``url`` when it starts with one of ``schemes`` (checked when settings load, not when a
    server first connects)."""
    if url is not None and not url.startswith(schemes):
        raise ValueError(f"URL must start with {' or '.join(schemes)}, got {url.split(':')[0]!r}")
    return url


def check_url(url: str | None, schemes: tuple[str, ...], field: str) -> None:
    """:func:`url_with_scheme` for a URL given outside the settings (a CLI option, a study's
    storage): a wrong scheme is a :class:`ConfigError` naming ``field``."""
    try:
        url_with_scheme(url, schemes)
    except ValueError as exc:
        raise ConfigError(f"{field} {exc}", field=field) from exc


class Settings(BaseSettings):
    """slocast configuration. Every field can be set as ``SLOCAST_<FIELD>`` or in TOML."""

    model_config = SettingsConfigDict(env_prefix="SLOCAST_", extra="forbid", populate_by_name=True)

    home: Path = Field(
        Path(".slocast"), description="Directory for embedded state (SQLite, bundles)."
    )
    target_coverage: float = Field(
        0.9,
        gt=0.5,
        lt=1.0,
        description="Promised probability that the upper bound covers the truth.",
    )
    test_fraction: float = Field(
        0.2, gt=0.0, lt=0.9, description="Share of rows, latest by time, held out for testing."
    )
    calibration_fraction: float = Field(
        0.2,
        gt=0.0,
        lt=0.9,
        description="Share of the non-test rows, latest by time, used for conformal calibration.",
    )
    model_family: ModelFamily = Field("lightgbm", description="Quantile GBM library.")
    seed: int = Field(0, description="Seed for every random choice (models, sampling).")
    train_threads: int = Field(
        2,
        ge=1,
        description="Threads one model fit uses (`slocast train`, the trainer). Not the "
        "machine's cores by default: in a container the host's core count overstates its CPU "
        "limit, and a trainer beside a prediction server shares the cores with it.",
    )
    under_cost_ratio: float = Field(
        5.0,
        gt=0.0,
        description="Business cost of one point of under-allocation vs over-allocation.",
    )
    min_group_size: int = Field(
        30, ge=1, description="Known outcomes a group needs before it gets its own calibration."
    )
    request_until: int = Field(
        30,
        ge=0,
        description="Known outcomes a group needs before its jobs get the model's bound instead "
        "of their request, where the request is a hard limit; otherwise unseen groups get it. "
        "0: never serve the request (the model's bound for every job).",
    )
    unseen_share: bool = Field(
        True,
        description="Serve a group never seen the largest share of its request (outcome / "
        "request) that any group seen needed, once enough groups are on record for the "
        "promise, instead of the whole request; where group names are paths ending in the "
        "program run (Nextflow processes), what its program needed in other groups, which "
        "also sizes groups with too few outcomes that would keep their request.",
    )
    request_limit_share: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Share of the miss budget (1 - coverage) that capping bounds at the request "
        "plus the grace past jobs took beyond theirs may cost (0: the grace is the largest "
        "overrun seen).",
    )
    headroom: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Room added to every bound, as a share of the mean outcome the model was "
        "fitted on (0: none): under a business score that counts missed jobs alike but weighs "
        "waste by size, it covers small jobs' slight overruns almost free, and raises coverage "
        "above the promise.",
    )
    calibration_window: int = Field(
        500, ge=50, description="Most recent conformity scores kept per group (tracks drift)."
    )
    calibration_decay: float = Field(
        0.98,
        gt=0.0,
        le=1.0,
        description="Age weight of a conformity score per newer one (1 = all scores in the "
        "window weigh the same).",
    )
    level_bins: int = Field(
        3,
        ge=1,
        le=10,
        description="Bins of the model's own upper quantile that split each calibration group "
        "(1 = groups only).",
    )
    history_expert: bool = Field(
        True,
        description="Where the domain keeps per-group history: a second bound from the group's "
        "recent outcomes, served to the groups where it has cost less than the model's.",
    )
    history_on_size: bool = Field(
        True,
        description="Where the domain records job sizes (a task's input): the history expert "
        "stands on what the group's jobs of this size needed, where that bounded its recent "
        "jobs tighter than their 0.9 quantile; off: on the quantile alone.",
    )
    aci_step: float = Field(
        0.02, ge=0.0, lt=0.5, description="Adaptive conformal step size gamma (0 disables ACI)."
    )
    aci_experts: int = Field(
        1,
        ge=1,
        le=15,
        description="ACI learners with step sizes around aci_step, weighted online (DtACI); "
        "1 = classic ACI.",
    )
    aci_overflow_gain: float = Field(
        0.0,
        ge=0.0,
        description="Score spreads added per unit of coverage ACI asks beyond its level clamp "
        "(0: off).",
    )
    serve_host: str = Field(
        "0.0.0.0",
        validation_alias=_alias("serve_host", "PREDICT_HOST"),
        description="Prediction server bind address (llm-d name: PREDICT_HOST).",
    )
    serve_port: int = Field(
        8001,
        ge=1,
        le=65535,
        validation_alias=_alias("serve_port", "PREDICT_PORT"),
        description="Prediction server port (llm-d name: PREDICT_PORT).",
    )
    max_batch: int = Field(10_000, ge=1, description="Most items one prediction request may carry.")
    max_body_bytes: int = Field(
        DEFAULT_MAX_BODY_BYTES,
        ge=1,
        description="Largest request body either server reads (413 past it, before reading).",
    )
    cache_entries: int = Field(100_000, ge=0, description="In-process LRU cache size (0 disables).")
    cache_max_batch: int = Field(
        64, ge=0, description="Largest batch served through the cache; larger ones are computed."
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="Server logs: one JSON object per line, or plain text."
    )
    predict_threads: int = Field(
        0,
        ge=0,
        description="Threads one batch prediction may use (0: the cores, shared among workers).",
    )
    training_server_url: str | None = Field(
        None,
        validation_alias=_alias("training_server_url", "TRAINING_SERVER_URL"),
        description="Trainer a prediction server pulls bundles from (llm-d: TRAINING_SERVER_URL).",
    )
    model_sync_interval_s: float = Field(
        10.0,
        gt=0,
        validation_alias=_alias("model_sync_interval_s", "MODEL_SYNC_INTERVAL_SEC"),
        description="Longest a prediction server waits between checks of the trainer's bundles "
        "(it watches them: a publish reaches it at once from a trainer that supports watches).",
    )
    retrain_interval_s: float = Field(
        1.0,
        gt=0,
        validation_alias=_alias("retrain_interval_s", "LATENCY_RETRAINING_INTERVAL_SEC"),
        description="Trainer: seconds between retrain checks.",
    )
    recalibrate_interval_s: float = Field(
        1.0,
        gt=0,
        description="Trainer: the least seconds between two republishes of the current "
        "models' live calibration (ACI level, score windows), which follow outcomes as they "
        "arrive, however long the retrain interval: drift reaches the prediction servers "
        "between retrains.",
    )
    min_samples_for_retrain: int = Field(
        100,
        ge=10,
        validation_alias=_alias("min_samples_for_retrain", "LATENCY_MIN_SAMPLES_FOR_RETRAIN"),
        description="Trainer: training rows needed before the first retrain (llm-d name).",
    )
    ensemble_mode: bool = Field(
        False,
        validation_alias=_alias("ensemble_mode", "LATENCY_ENSEMBLE_MODE"),
        description="Trainer: queue-gated models (waiting == 0 and > 0) for the LLM domains.",
    )
    max_per_bucket: int = Field(
        5000,
        ge=1,
        validation_alias=_alias("max_per_bucket", "LATENCY_MAX_TRAINING_DATA_SIZE_PER_BUCKET"),
        description="Trainer: rows kept per retention bucket, oldest evicted (llm-d name).",
    )
    test_share: float = Field(
        0.1,
        gt=0,
        lt=0.5,
        validation_alias=_alias("test_share", "LATENCY_TEST_TRAIN_RATIO"),
        description="Trainer: share of rows held out for gating (llm-d: LATENCY_TEST_TRAIN_RATIO).",
    )
    max_test_rows: int = Field(
        20_000,
        ge=1,
        validation_alias=_alias("max_test_rows", "LATENCY_MAX_TEST_DATA_SIZE"),
        description="Trainer: held-out rows kept per domain (llm-d: LATENCY_MAX_TEST_DATA_SIZE).",
    )
    trainer_port: int = Field(8000, ge=1, le=65535, description="Trainer HTTP port.")
    trainer_compile: bool = Field(
        False,
        description="Trainer publishes compiled trees (lleaves or TL2cgen) so synced prediction "
        "servers take the fast path; each retrain then compiles (about 2 s per model, outside "
        "the lock).",
    )
    store_url: str | None = Field(
        None,
        description="Sample store URL (sqlite:///PATH or postgresql://USER@HOST/DB); default "
        "SQLite under home.",
    )
    cache_url: str | None = Field(
        None, description="Prediction cache URL (redis://...); default in-process."
    )

    @field_validator("store_url")
    @classmethod
    def _store_scheme(cls, url: str | None) -> str | None:
        return url_with_scheme(url, STORE_SCHEMES)

    @field_validator("cache_url")
    @classmethod
    def _cache_scheme(cls, url: str | None) -> str | None:
        return url_with_scheme(url, CACHE_SCHEMES)

    @field_validator("training_server_url")
    @classmethod
    def _trainer_scheme(cls, url: str | None) -> str | None:
        # Without it a server started, then warned every sync that no trainer answered.
        return url_with_scheme(url, TRAINER_SCHEMES)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("SLOCAST_CONFIG", "slocast.toml"))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
        )


def cores_per_worker(workers: int) -> int:
    """This machine's cores shared among ``workers`` processes (at least one each)."""
    return max(1, (os.cpu_count() or 1) // workers)


def load_settings(**overrides: object) -> Settings:
    """Build settings from env + TOML + explicit overrides; invalid values raise ConfigError."""
    config = os.environ.get("SLOCAST_CONFIG")
    if config and not Path(config).is_file():
        raise ConfigError(f"config file {config} does not exist", field="SLOCAST_CONFIG")
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except tomllib.TOMLDecodeError as exc:
        path = config or "slocast.toml"
        raise ConfigError(
            f"config file {path} is not valid TOML: {exc}",
            field="SLOCAST_CONFIG" if config else None,
            source=path,
        ) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid setting {name}: {first['msg']}", field=name) from exc
