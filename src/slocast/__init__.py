"""slocast: calibrated upper bounds for compute jobs (latency, runtime, memory).

The public API is what ``__all__`` lists here and in each subpackage.
"""

from importlib import metadata

from slocast.errors import (
    BundleError,
    ConfigError,
    DataFormatError,
    EmptyDataError,
    InputError,
    LifecycleError,
    SlocastError,
)
from slocast.schema import DOMAINS, DomainSpec, Prediction, get_domain

try:
    __version__ = metadata.version("slocast")
except metadata.PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"

__all__ = [
    "DOMAINS",
    "BundleError",
    "ConfigError",
    "DataFormatError",
    "DomainSpec",
    "EmptyDataError",
    "InputError",
    "LifecycleError",
    "Prediction",
    "SlocastError",
    "__version__",
    "get_domain",
]
