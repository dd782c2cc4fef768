"""Model bundles: save, load, verify."""

from slocast.artifacts.bundle import (
    FORMAT_VERSION,
    ModelBundle,
    load_bundle,
    records_frame,
    save_bundle,
    sha256_file,
)

__all__ = [
    "FORMAT_VERSION",
    "ModelBundle",
    "load_bundle",
    "records_frame",
    "save_bundle",
    "sha256_file",
]
