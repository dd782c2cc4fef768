"""Model bundles: save, load, verify."""

from slocast.artifacts.bundle import (
    FORMAT_VERSION,
    ModelBundle,
    load_bundle,
    save_bundle,
    sha256_file,
    validate_records,
)

__all__ = [
    "FORMAT_VERSION",
    "ModelBundle",
    "load_bundle",
    "save_bundle",
    "sha256_file",
    "validate_records",
]
