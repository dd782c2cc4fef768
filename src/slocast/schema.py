"""Domain specifications and the value types that cross module boundaries."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from slocast.errors import ConfigError

__all__ = [
    "DOMAINS",
    "MAX_NUMBER",
    "NON_NEGATIVE_RANGE_TEXT",
    "POOLED",
    "SIGNED_RANGE_TEXT",
    "DomainSpec",
    "Prediction",
    "get_domain",
]

# The group key of jobs without a group (and of statistics pooled over all groups).
POOLED = "__pooled__"

# The largest number a job may carry. float64 holds every integer up to it exactly, cache keys
# and stored rows pack numbers into 64 bits, and no count, size or duration comes near it
# (2**53 bytes are 8 PiB): past it, an input is refused rather than predicted on.
MAX_NUMBER = 2**53
# The two ranges numbers are checked against, as error messages write them.
SIGNED_RANGE_TEXT = "[-2^53, 2^53]"
NON_NEGATIVE_RANGE_TEXT = "[0, 2^53]"


@dataclass(frozen=True)
class DomainSpec:
    """What one prediction domain looks like as a table.

    ``time`` orders rows (in ``time_unit``: seconds, or ``"row"`` for traces without clocks);
    ``known_at`` is the column holding the time the outcome becomes known (job end), which
    online methods must respect. ``user_request`` names the column holding what the user asked
    for (the baseline an allocator replaces). ``optional`` features may be left out by a caller
    (they are then missing to the model), e.g. history the caller does not keep.
    ``scale_with`` names load features the target grows with (time to first token with the
    queue ahead): models learn the target relative to a line fitted on that load, so bounds
    follow a load heavier than any seen in training instead of flattening at the largest one
    (see :class:`~slocast.features.FeaturePipeline`). ``non_negative``: every number a job
    carries (features and request) is a count, size, duration or share, so one below 0 is bad
    input, refused before any model sees it. ``group_path``: the separator of group names that
    are paths whose last segment names the program the group runs (a Nextflow process
    ``RNASEQ:MARK_DUPLICATES_PICARD:SAMTOOLS_STATS`` runs the module ``SAMTOOLS_STATS``, also
    run under other subworkflows); empty where groups are not. ``retry``: the numeric feature
    counting a job's attempts (1: its first), where the log records them; a job on a later
    attempt ran out of what an earlier one had, so it gets at least its request.
    """

    name: str
    target: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    time: str = "time"
    known_at: str = "known_at"
    group: str | None = None
    user_request: str | None = None
    optional: tuple[str, ...] = ()
    unit: str = ""
    time_unit: str = "s"
    description: str = ""
    scale_with: tuple[str, ...] = ()
    non_negative: bool = True
    group_path: str = ""
    retry: str = ""

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    @property
    def numbers(self) -> tuple[str, ...]:
        """Every numeric input a job carries: the numeric features and the request."""
        request = (self.user_request,) if self.user_request else ()
        return tuple(dict.fromkeys(self.numeric + request))

    @property
    def number_range(self) -> tuple[float, float]:
        """The range every numeric input must lie in (NaN, for missing, aside)."""
        return (0.0 if self.non_negative else -MAX_NUMBER, MAX_NUMBER)

    @property
    def number_range_text(self) -> str:
        """:attr:`number_range` as error messages write it: ``[0, 2^53]``."""
        return NON_NEGATIVE_RANGE_TEXT if self.non_negative else SIGNED_RANGE_TEXT

    @property
    def texts(self) -> tuple[str, ...]:
        """Every text input a job carries: the categorical features and the group."""
        group = (self.group,) if self.group else ()
        return tuple(dict.fromkeys(self.categorical + group))

    def without_features(self, dropped: set[str]) -> DomainSpec:
        """The same spec with some feature columns removed (e.g. constant in this log); a
        removed group column leaves the spec without groups."""
        return replace(
            self,
            group=None if self.group in dropped else self.group,
            numeric=tuple(c for c in self.numeric if c not in dropped),
            categorical=tuple(c for c in self.categorical if c not in dropped),
            optional=tuple(c for c in self.optional if c not in dropped),
            scale_with=tuple(c for c in self.scale_with if c not in dropped),
            retry="" if self.retry in dropped else self.retry,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "target": self.target,
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "time": self.time,
            "known_at": self.known_at,
            "group": self.group,
            "user_request": self.user_request,
            "optional": list(self.optional),
            "unit": self.unit,
            "time_unit": self.time_unit,
            "description": self.description,
            "scale_with": list(self.scale_with),
            "non_negative": self.non_negative,
            "group_path": self.group_path,
            "retry": self.retry,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> DomainSpec:
        def names(key: str) -> tuple[str, ...]:
            value = data.get(key, [])
            return tuple(str(v) for v in value) if isinstance(value, list) else ()

        def optional(key: str) -> str | None:
            value = data.get(key)
            return None if value is None else str(value)

        return cls(
            name=str(data["name"]),
            target=str(data["target"]),
            numeric=names("numeric"),
            categorical=names("categorical"),
            time=str(data.get("time", "time")),
            known_at=str(data.get("known_at", "known_at")),
            group=optional("group"),
            user_request=optional("user_request"),
            optional=names("optional"),
            unit=str(data.get("unit", "")),
            time_unit=str(data.get("time_unit", "s")),
            description=str(data.get("description", "")),
            scale_with=names("scale_with"),
            non_negative=bool(data.get("non_negative", True)),
            group_path=str(data.get("group_path", "")),
            retry=str(data.get("retry", "")),
        )


_LLM_FEATURES = (
    "kv_cache_percentage",
    "input_token_length",
    "num_request_waiting",
    "num_request_running",
    "num_tokens_generated",
    "prefix_cache_score",
    "prefill_tokens_in_flight",
    "decode_tokens_in_flight",
)
# Prefill/decode disaggregation: "" is a monolithic pod. Constant in a trace, it is dropped.
_LLM_CATEGORIES = ("pod_type",)

DOMAINS: dict[str, DomainSpec] = {
    spec.name: spec
    for spec in (
        DomainSpec(
            name="llm-ttft",
            target="actual_ttft_ms",
            numeric=_LLM_FEATURES,
            categorical=_LLM_CATEGORIES,
            optional=_LLM_CATEGORIES,
            unit="ms",
            time_unit="row",
            description="LLM time to first token",
            # A saturated server admits requests at a steady pace: the wait grows with the queue.
            scale_with=("num_request_waiting",),
        ),
        DomainSpec(
            name="llm-tpot",
            target="actual_tpot_ms",
            numeric=_LLM_FEATURES,
            categorical=_LLM_CATEGORIES,
            optional=_LLM_CATEGORIES,
            unit="ms",
            time_unit="row",
            description="LLM time per output token",
        ),
        DomainSpec(
            name="hpc-runtime",
            target="run_time",
            numeric=("requested_procs", "requested_time", "requested_memory"),
            categorical=("user", "group_id", "executable", "queue", "partition"),
            group="user",
            user_request="requested_time",
            unit="s",
            description="HPC job run time (Standard Workload Format logs)",
        ),
        DomainSpec(
            name="task-memory",
            target="peak_rss",
            numeric=("cpus", "time_limit", "memory", "rchar", "attempt"),
            categorical=("process",),
            group="process",
            user_request="memory",
            optional=("attempt",),
            group_path=":",
            retry="attempt",
            unit="bytes",
            description="Workflow task peak memory (Nextflow traces)",
        ),
        DomainSpec(
            name="serving-latency",
            target="exec_time_seconds",
            numeric=(
                "prompt_length",
                "negative_prompt_length",
                "num_images_per_prompt",
                "num_inference_steps",
                "num_lora",
            ),
            categorical=("predict_type", "checkpoint_model_version_id", "groupId"),
            group="checkpoint_model_version_id",
            unit="s",
            description="Model-serving request execution time (Alibaba GenAI trace)",
        ),
    )
}


def get_domain(name: str) -> DomainSpec:
    """Look up a built-in domain by name; unknown names raise :class:`ConfigError`."""
    try:
        return DOMAINS[name]
    except KeyError:
        known = ", ".join(sorted(DOMAINS))
        raise ConfigError(f"unknown domain {name!r}; known: {known}", field="domain") from None


@dataclass(frozen=True)
class Prediction:
    """A calibrated upper bound for one job.

    ``upper`` covers the true outcome with probability ``coverage`` (e.g. 0.9) on data after the
    training window. Bounds are never below the point estimate and never negative.

    >>> p = Prediction(point=1.5, upper=2.0, coverage=0.9, model_version="v1")
    >>> p.upper >= p.point
    True
    """

    point: float
    upper: float
    coverage: float
    model_version: str
    lower: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.coverage < 1.0:
            raise ValueError(f"coverage must be in (0, 1), got {self.coverage}")
        if self.point < 0 or self.upper < self.point:
            raise ValueError(f"need 0 <= point <= upper, got point={self.point} upper={self.upper}")
