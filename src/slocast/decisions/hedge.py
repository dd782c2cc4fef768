"""Next value of a noisy load series by online expert aggregation over simple smoothers.

The experts are the last value, exponentially weighted means and rolling medians of the series
itself. Each forecast is their average under weights ``exp(-eta * L_i)``, where ``L_i`` is expert
``i``'s discounted sum of past absolute errors (the exponentially weighted average forecaster,
Cesa-Bianchi & Lugosi, *Prediction, Learning, and Games*, ch. 2).

Why online rather than fitted once: a stage's latency changes regime over a day. On the Alibaba
stage series, the smoother a fit on the older minutes picks (an EWMA of span 5) loses to the
last value on the newer ones, while online weights follow whichever smoother has been right
lately -- with a regret bound against the best expert in hindsight. Errors are divided by a
running error scale, so ``eta`` carries no unit; ``discount`` forgets old errors.

>>> forecaster = HedgeForecaster()
>>> for value in [1.0, 5.0] * 20:  # a spike every other minute: the medians and means win
...     forecaster.update(value)
>>> max(forecaster.weights(), key=forecaster.weights().get) != "last"
True
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

__all__ = ["HedgeForecaster"]


@dataclass
class HedgeForecaster:
    spans: tuple[int, ...] = (2, 3, 5)
    medians: tuple[int, ...] = (3, 5)
    eta: float = 1.0
    discount: float = 0.98
    _means: list[float] = field(default_factory=list, init=False)
    _recent: deque[float] = field(init=False)
    _losses: np.ndarray = field(init=False)
    _scale: float = field(default=math.nan, init=False)

    def __post_init__(self) -> None:
        if self.eta <= 0 or not 0 < self.discount <= 1:
            raise ValueError("eta must be > 0 and discount in (0, 1]")
        if any(s < 1 for s in self.spans) or any(m < 1 for m in self.medians):
            raise ValueError("spans and median windows must be at least 1")
        self._recent = deque(maxlen=max((1, *self.medians)))
        self._losses = np.zeros(len(self.names))

    @property
    def names(self) -> list[str]:
        return [
            "last",
            *(f"ewma{s}" for s in self.spans),
            *(f"median{m}" for m in self.medians),
        ]

    def _experts(self) -> np.ndarray:
        recent = list(self._recent)
        medians = [float(np.median(recent[-m:])) for m in self.medians]
        return np.array([recent[-1], *self._means, *medians])

    def weights(self) -> dict[str, float]:
        raw = np.exp(-self.eta * (self._losses - self._losses.min()))
        return dict(zip(self.names, (raw / raw.sum()).tolist(), strict=True))

    def predict(self) -> float:
        """Forecast of the next value (NaN before the first one)."""
        if not self._recent:
            return math.nan
        return float(np.dot(list(self.weights().values()), self._experts()))

    def update(self, value: float) -> None:
        """Score every expert on the value that arrived, then let them take it in."""
        if self._recent:
            errors = np.abs(self._experts() - value)
            mean = float(errors.mean())
            self._scale = mean if math.isnan(self._scale) else (
                self.discount * self._scale + (1 - self.discount) * mean
            )  # fmt: skip
            self._losses = self.discount * self._losses + errors / max(self._scale, 1e-12)
            alphas = [2.0 / (s + 1.0) for s in self.spans]
            self._means = [m + a * (value - m) for m, a in zip(self._means, alphas, strict=True)]
        else:
            self._means = [value] * len(self.spans)
        self._recent.append(value)
