"""What a simulated policy achieved: the numbers an SRE compares policies on."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["PolicyResult"]


@dataclass
class PolicyResult:
    name: str
    slo_s: float
    arrived: int = 0
    served: int = 0
    dropped: int = 0
    latencies: list[float] = field(default_factory=list)
    replica_seconds: float = 0.0
    scale_events: int = 0
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (time, replicas)
    extra: dict[str, float] = field(default_factory=dict)  # scenario-specific counts

    def summary(self) -> dict[str, float]:
        lat = np.asarray(self.latencies, dtype=np.float64)
        within = int((lat <= self.slo_s).sum())
        p50, p90, p99 = (
            (float(np.percentile(lat, q)) * 1000.0 for q in (50, 90, 99))
            if len(lat)
            else (np.nan, np.nan, np.nan)
        )
        return {
            # Dropped requests count as misses: attainment is over everything that arrived.
            "slo_attainment_pct": 100.0 * within / max(self.arrived, 1),
            "p50_ms": p50,
            "p90_ms": p90,
            "p99_ms": p99,
            "replica_seconds": self.replica_seconds,
            "scale_events": float(self.scale_events),
            "arrived": float(self.arrived),
            "served": float(self.served),
            "dropped": float(self.dropped),
            **self.extra,
        }
