from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from slocast import ConfigError, Prediction, get_domain
from slocast.artifacts import validate_records
from slocast.calibration.forecaster import build_slocast
from slocast.cli._common import calibration_params
from slocast.errors import DataFormatError, InputError, SlocastError
from slocast.features import history_base_column
from slocast.models.quantile import QuantileForecaster
from slocast.schema import DOMAINS, DomainSpec
from slocast.settings import load_settings


def test_builtin_domains_never_use_outcome_columns_as_features() -> None:
    assert set(DOMAINS) == {"llm-ttft", "llm-tpot", "hpc-runtime", "task-memory", "serving-latency"}
    for spec in DOMAINS.values():
        assert spec.target not in spec.features
        assert spec.known_at not in spec.features


def test_spec_round_trips_through_dict() -> None:
    spec = get_domain("task-memory")
    assert DomainSpec.from_dict(spec.to_dict()) == spec
    signed = replace(spec, non_negative=False)
    assert DomainSpec.from_dict(signed.to_dict()) == signed
    # Bundles written before the field: every builtin number is a count, size or duration.
    older = {k: v for k, v in spec.to_dict().items() if k != "non_negative"}
    assert DomainSpec.from_dict(older).non_negative
    # Nor group paths: every group its own program.
    assert spec.group_path == ":"
    older = {k: v for k, v in spec.to_dict().items() if k != "group_path"}
    assert DomainSpec.from_dict(older).group_path == ""


def test_inputs_out_of_the_domains_range_are_refused_naming_the_job_and_field() -> None:
    spec = get_domain("task-memory")
    job = {"cpus": 2, "time_limit": 3600.0, "memory": 4e9, "rchar": 1e6, "process": "ALIGN"}
    validate_records([job, job | {"rchar": float("nan")}], spec)  # NaN: a missing input
    for field, value in [("cpus", -1), ("memory", float("inf")), ("rchar", 2**70)]:
        with pytest.raises(InputError, match=f"'{field}' must be in") as error:
            validate_records([job, job | {field: value}], spec)
        assert error.value.field == f"[1].{field}"
    validate_records([job | {"cpus": -1}], replace(spec, non_negative=False))
    validate_records([job | {"process": 12}], spec)  # an id sent as a number still names it
    for odd in ({"a": 1}, ["ALIGN"], True):
        with pytest.raises(InputError, match="'process' must be a name"):
            validate_records([job | {"process": odd}], spec)


def test_unknown_domain_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown domain 'nope'"):
        get_domain("nope")


def test_prediction_invariants() -> None:
    Prediction(point=1.0, upper=1.0, coverage=0.9, model_version="v")
    with pytest.raises(ValueError):
        Prediction(point=2.0, upper=1.0, coverage=0.9, model_version="v")
    with pytest.raises(ValueError):
        Prediction(point=-1.0, upper=1.0, coverage=0.9, model_version="v")
    with pytest.raises(ValueError):
        Prediction(point=1.0, upper=2.0, coverage=1.0, model_version="v")


def test_errors_share_one_root_and_name_their_field() -> None:
    exc = DataFormatError("missing column 'x'", field="x", source="f.csv")
    assert isinstance(exc, InputError) and isinstance(exc, SlocastError)
    assert str(exc) == "missing column 'x' (file=f.csv, field=x)"


def test_settings_defaults_env_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings().target_coverage == 0.9
    (tmp_path / "slocast.toml").write_text("target_coverage = 0.95\nseed = 7\n")
    assert load_settings().target_coverage == 0.95
    monkeypatch.setenv("SLOCAST_TARGET_COVERAGE", "0.8")
    settings = load_settings()
    assert settings.target_coverage == 0.8  # env overrides the file
    assert settings.seed == 7


def test_invalid_setting_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOCAST_TARGET_COVERAGE", "1.5")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.field == "target_coverage"


def test_the_unseen_share_setting_reaches_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    assert calibration_params(load_settings()).unseen_share
    monkeypatch.setenv("SLOCAST_UNSEEN_SHARE", "false")
    assert not calibration_params(load_settings()).unseen_share
    monkeypatch.setenv("SLOCAST_UNSEEN_SHARE", "sometimes")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.field == "unseen_share"


def test_the_history_on_size_setting_chooses_the_history_experts_base(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where tasks record their input size, the history expert stands on the size line by
    default; off, on the group's 0.9 quantile (chipseq and rnaseq scored lower that way)."""
    memory = get_domain("task-memory")
    history = ("process_p90_peak_rss", "process_by_size_peak_rss")
    spec = replace(memory, numeric=(*memory.numeric, *history), optional=history)

    def base() -> str | None:
        forecaster = build_slocast(
            QuantileForecaster(spec, 0.9), calibration_params(load_settings())
        )
        return forecaster.history.column if forecaster.history else None

    assert base() == "process_by_size_peak_rss"
    monkeypatch.setenv("SLOCAST_HISTORY_ON_SIZE", "false")
    assert base() == "process_p90_peak_rss"
    without_sizes = replace(spec, numeric=(*memory.numeric, history[0]), optional=history[:1])
    assert history_base_column(without_sizes, on_size=True) == "process_p90_peak_rss"


def test_the_headroom_setting_reaches_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    assert calibration_params(load_settings()).headroom == 0.0
    monkeypatch.setenv("SLOCAST_HEADROOM", "0.01")
    assert calibration_params(load_settings()).headroom == 0.01
    monkeypatch.setenv("SLOCAST_HEADROOM", "2")  # a share of the mean outcome: at most 1
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.field == "headroom"


@pytest.mark.parametrize(
    ("name", "url", "field"),
    [
        ("SLOCAST_STORE_URL", "mysql://user:secret@db/x", "store_url"),
        ("SLOCAST_CACHE_URL", "memcached://c", "cache_url"),
        # A setting with an llm-d name too is reported by the variable that was set.
        ("SLOCAST_TRAINING_SERVER_URL", "trainer:8000", "SLOCAST_TRAINING_SERVER_URL"),
    ],
)
def test_a_url_of_an_unknown_scheme_is_refused_when_settings_load(
    monkeypatch: pytest.MonkeyPatch, name: str, url: str, field: str
) -> None:
    """It used to surface as a traceback when a server first connected."""
    monkeypatch.setenv(name, url)
    with pytest.raises(ConfigError, match="URL must start with") as info:
        load_settings()
    assert info.value.field == field
    assert "secret" not in str(info.value)


def test_missing_config_file_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOCAST_CONFIG", "/nonexistent/slocast.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()


def test_a_config_file_that_is_not_toml_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It used to end every command in a tomllib traceback (exit 1)."""
    config = tmp_path / "slocast.toml"
    config.write_text('aci_step = "0.05\n[unclosed')
    monkeypatch.setenv("SLOCAST_CONFIG", str(config))
    with pytest.raises(ConfigError, match="is not valid TOML") as info:
        load_settings()
    assert info.value.source == str(config) and info.value.field == "SLOCAST_CONFIG"
    monkeypatch.delenv("SLOCAST_CONFIG")
    monkeypatch.chdir(tmp_path)  # the default file, slocast.toml in the working directory
    with pytest.raises(ConfigError, match=r"slocast\.toml is not valid TOML"):
        load_settings()
