"""The versioned model store shared by the API process (no torch) and the worker."""

from service.store.files import MANIFEST_FILE, ONNX_FILE, WEIGHTS_FILE, write_json
from service.store.manifest import (
    ArchitectureSpec,
    ClassPostprocess,
    DefectClassSpec,
    InputSpec,
    Lineage,
    Manifest,
    ManifestDraft,
    Metrics,
    Normalisation,
)
from service.store.store import (
    IntegrityError,
    InvalidNameError,
    ModelStore,
    ModelVersion,
    NotFoundError,
    StoreError,
    sha256_file,
    verify_files,
)

__all__ = [
    "MANIFEST_FILE",
    "ONNX_FILE",
    "WEIGHTS_FILE",
    "ArchitectureSpec",
    "ClassPostprocess",
    "DefectClassSpec",
    "InputSpec",
    "IntegrityError",
    "InvalidNameError",
    "Lineage",
    "Manifest",
    "ManifestDraft",
    "Metrics",
    "ModelStore",
    "ModelVersion",
    "Normalisation",
    "NotFoundError",
    "StoreError",
    "sha256_file",
    "verify_files",
    "write_json",
]
