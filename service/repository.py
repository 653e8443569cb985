"""The model repository on disk: which bundles exist, under which ids and versions.

A repository is a directory whose subdirectories are models::

    models/
      en-de/              a bundle (manifest.json in it): model "en-de", version "1"
      en-fr/
        1/                versioned: model "en-fr", versions 1 and 2; 2 is served
        2/

A versioned model's highest version (by number) is served unless it is pinned. Model ids and
versions are names (``[A-Za-z0-9._-]+``), and nothing outside the repository directory is
ever read: a path that resolves outside it (``..``, a symlink escaping it) is refused. Only
names are read here; a bundle's files are verified against its manifest when it is loaded
(:func:`service.bundle.verify_bundle`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from service.bundle import MANIFEST

NAME = re.compile(r"[A-Za-z0-9._-]+")
FLAT_VERSION = "1"  # the version of a model that is one bundle, not versioned directories


class RepositoryError(ValueError):
    """A model or version that does not exist, is not a valid name, or escapes the
    repository."""


def check_name(kind: str, name: str) -> str:
    if not NAME.fullmatch(name) or name in (".", ".."):
        raise RepositoryError(f"{kind} {name!r} is not a valid name: letters, digits, '.', "
                              "'_' and '-' only")
    return name


@dataclass(frozen=True)
class Entry:
    """One servable bundle: a model id, its version and where it lies."""

    id: str
    version: str
    path: Path


class Repository:
    """Bundles under ``root``; ``single`` makes ``root`` itself the only model (the
    ``SERVICE_BUNDLE_DIR`` setting: a repository of one, named after its directory)."""

    def __init__(self, root: Path, single: bool = False,
                 pinned: dict[str, str] | None = None) -> None:
        self.root = Path(root).resolve()
        self.name = Path(root).name  # the single model's id: its directory's name as given
        self.single = single
        self.pinned = dict(pinned or {})

    def ids(self) -> list[str]:
        """Every model in the repository, by name (directories holding no bundle and names
        that are not valid are left out)."""
        if self.single:
            return [self.name]
        if not self.root.is_dir():
            raise RepositoryError(f"model repository {self.root} is not a directory")
        return sorted(p.name for p in self.root.iterdir()
                      if NAME.fullmatch(p.name) and self._inside(p) and self.versions(p.name))

    def versions(self, model: str) -> list[str]:
        """The model's versions on disk, oldest first."""
        directory = self._model_dir(model)
        if (directory / MANIFEST).is_file():
            return [FLAT_VERSION]
        if not directory.is_dir():
            return []
        found = [p.name for p in directory.iterdir() if NAME.fullmatch(p.name)
                 and self._inside(p) and (p / MANIFEST).is_file()]
        return sorted(found, key=_version_key)

    def entry(self, model: str, version: str | None = None) -> Entry:
        """The bundle to serve for ``model``: ``version``, else the pinned one, else the
        newest."""
        check_name("model", model)
        versions = self.versions(model)
        if not versions:
            raise RepositoryError(f"no model {model!r} in {self.root}")
        version = version or self.pinned.get(model) or versions[-1]
        check_name("version", version)
        if version not in versions:
            raise RepositoryError(f"model {model!r} has no version {version!r} (on disk: "
                                  f"{', '.join(versions)})")
        directory = self._model_dir(model)
        path = directory if version == FLAT_VERSION and (directory / MANIFEST).is_file() \
            else directory / version
        return Entry(model, version, path)

    def _model_dir(self, model: str) -> Path:
        check_name("model", model)
        if self.single:
            if model != self.name:
                raise RepositoryError(f"no model {model!r}: this repository serves only "
                                      f"{self.name!r}")
            return self.root
        path = self.root / model
        if not self._inside(path):
            raise RepositoryError(f"model {model!r} resolves outside the repository")
        return path

    def _inside(self, path: Path) -> bool:
        """``path``, with every symlink resolved, is in the repository."""
        return path.resolve().is_relative_to(self.root)


def _version_key(version: str) -> tuple[int, int | str]:
    """Numbers by value (2 < 10), then other names alphabetically."""
    return (0, int(version)) if version.isdigit() else (1, version)
