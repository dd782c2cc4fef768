"""Model bundles: save, load, verify."""

from slocast.artifacts.bundle import (
    FORMAT_VERSION,
    ModelBundle,
    load_bundle,
    save_bundle,
    sha256_file,
    validate_records,
)
from slocast.artifacts.deployable import DeployableModel

__all__ = [
    "FORMAT_VERSION",
    "DeployableModel",
    "ModelBundle",
    "load_bundle",
    "save_bundle",
    "sha256_file",
    "validate_records",
]
