"""A folder-backed, write-once store of model versions with movable aliases.

Layout: ``<root>/<model>/<version>/`` holds ``manifest.json`` and the files it hashes;
``<root>/<model>/aliases.json`` maps alias names to versions. A version is written to a
temporary folder and renamed into place, so readers never see half a version, and an
existing version is never overwritten. Knows nothing of torch.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from service.store.files import MANIFEST_FILE, fsync_dir, write_json
from service.store.manifest import Manifest, ManifestDraft

ALIASES_FILE = "aliases.json"
MAX_NAME_LENGTH = 64
_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*")
NameKind = Literal["model", "alias"]


class StoreError(Exception):
    """Base of every model store error."""


class NotFoundError(StoreError):
    """A model, version or alias that does not exist."""


class IntegrityError(StoreError):
    """A version whose files do not match the hashes in its manifest."""


class InvalidNameError(StoreError, ValueError):
    """A model or alias name the store refuses before it opens anything: such a name could lead
    out of the store (``..``)."""

    def __init__(self, kind: NameKind, name: str) -> None:
        super().__init__(
            f"invalid {kind} name {name!r}: use 1-{MAX_NAME_LENGTH} lowercase letters, digits, "
            "'_', '.' and '-', starting with a letter or digit, without '..'"
        )
        self.code = f"invalid_{kind}_name"


@dataclass(frozen=True)
class ModelVersion:
    """A verified version on disk."""

    manifest: Manifest
    path: Path

    def file(self, name: str) -> Path:
        return self.path / name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and ".." not in name and bool(_NAME_PATTERN.fullmatch(name))


def validate_name(name: str, kind: NameKind = "model") -> str:
    """``name`` if it is a valid model (or alias) name; raises ``InvalidNameError``."""
    if not is_valid_name(name):
        raise InvalidNameError(kind, name)
    return name


class ModelStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and is_valid_name(p.name) and self.versions(p.name)
        )

    def versions(self, name: str) -> list[int]:
        model_dir = self._model_dir(name)
        if not model_dir.is_dir():
            return []
        return sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and p.is_dir())

    def manifest(self, name: str, version: int) -> Manifest:
        """Read a manifest without checking file hashes (for listings)."""
        path = self._model_dir(name) / str(version) / MANIFEST_FILE
        if not path.is_file():
            raise NotFoundError(f"model {name!r} has no version {version}")
        return Manifest.model_validate_json(path.read_text())

    def resolve(self, name: str, ref: int | str) -> int:
        """Turn a version number, a numeric string, an alias or ``latest`` into a version."""
        if isinstance(ref, int) or ref.isdigit():
            version = int(ref)
            if version not in self.versions(name):
                raise NotFoundError(f"model {name!r} has no version {version}")
            return version
        if ref == "latest":
            versions = self.versions(name)
            if not versions:
                raise NotFoundError(f"model {name!r} has no versions")
            return versions[-1]
        aliases = self.aliases(name)
        if validate_name(ref, "alias") not in aliases:
            raise NotFoundError(f"model {name!r} has no alias {ref!r}")
        return aliases[ref]

    def load(self, name: str, ref: int | str) -> ModelVersion:
        """Resolve ``ref`` and return the version after verifying every file's sha256."""
        version = self.resolve(name, ref)
        manifest = self.manifest(name, version)
        path = self._model_dir(name) / str(version)
        verify_files(path, manifest)
        return ModelVersion(manifest=manifest, path=path)

    def publish(self, name: str, draft: ManifestDraft, files: Mapping[str, Path]) -> Manifest:
        """Write a new version (the next free number) holding copies of ``files``."""
        if MANIFEST_FILE in files:
            raise ValueError(f"{MANIFEST_FILE} is written by the store, not supplied")
        model_dir = self._model_dir(name)
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
        staging.chmod(0o755)  # mkdtemp makes it private; a published version is world-readable
        try:
            hashes = {}
            for file_name, source in sorted(files.items()):
                shutil.copyfile(source, staging / file_name)
                hashes[file_name] = sha256_file(staging / file_name)
            return self._claim_next_version(name, draft, hashes, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _claim_next_version(
        self, name: str, draft: ManifestDraft, hashes: dict[str, str], staging: Path
    ) -> Manifest:
        """Rename the staging folder to the next version; a concurrent publisher makes us retry."""
        model_dir = self._model_dir(name)
        while True:
            version = max(self.versions(name), default=0) + 1
            manifest = Manifest(name=name, version=version, files=hashes, **draft.model_dump())
            write_json(staging / MANIFEST_FILE, manifest.model_dump(mode="json"))
            try:
                os.rename(staging, model_dir / str(version))
            except OSError:
                if (model_dir / str(version)).exists():
                    continue
                raise
            fsync_dir(model_dir)
            return manifest

    def aliases(self, name: str) -> dict[str, int]:
        path = self._model_dir(name) / ALIASES_FILE
        if not path.is_file():
            return {}
        return {alias: int(version) for alias, version in json.loads(path.read_text()).items()}

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version`` after checking the version is intact."""
        validate_name(alias, "alias")
        self.load(name, version)
        with self._locked(name):
            aliases = self.aliases(name)
            aliases[alias] = version
            write_json(self._model_dir(name) / ALIASES_FILE, dict(sorted(aliases.items())))

    def remove_alias(self, name: str, alias: str) -> None:
        validate_name(alias, "alias")
        with self._locked(name):
            aliases = self.aliases(name)
            if alias not in aliases:
                raise NotFoundError(f"model {name!r} has no alias {alias!r}")
            del aliases[alias]
            write_json(self._model_dir(name) / ALIASES_FILE, aliases)

    def _model_dir(self, name: str) -> Path:
        """The folder of model ``name``: every path into the store starts here, so that a name
        that could lead elsewhere is refused before anything is opened."""
        return self.root / validate_name(name)

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        model_dir = self._model_dir(name)
        if not model_dir.is_dir():
            raise NotFoundError(f"no model {name!r} in {self.root}")
        with (model_dir / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def verify_files(path: Path, manifest: Manifest) -> None:
    """Refuse a version whose files differ from, or go beyond, what its manifest hashes."""
    present = {p.name for p in path.iterdir() if p.is_file()} - {MANIFEST_FILE}
    missing = sorted(set(manifest.files) - present)
    extra = sorted(present - set(manifest.files))
    if missing or extra:
        raise IntegrityError(
            f"{manifest.name} v{manifest.version}: missing files {missing}, unexpected {extra}"
        )
    for file_name, expected in manifest.files.items():
        actual = sha256_file(path / file_name)
        if actual != expected:
            raise IntegrityError(
                f"{manifest.name} v{manifest.version}: {file_name} has sha256 {actual[:12]}..., "
                f"manifest says {expected[:12]}...; refusing a tampered or corrupted version"
            )
