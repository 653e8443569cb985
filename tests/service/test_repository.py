"""The model repository on disk: ids, versions, pins, and nothing read outside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.bundle import MANIFEST
from service.repository import FLAT_VERSION, Repository, RepositoryError


def bundle(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / MANIFEST).write_text("{}")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    bundle(root / "en-de")
    for version in ("1", "2", "10"):
        bundle(root / "en-fr" / version)
    (root / "en-fr" / "notes").mkdir()  # no manifest: not a version
    (root / "empty").mkdir()  # no bundle: not a model
    bundle(root / "bad name!")  # not a valid id: never listed
    return root


def test_models_versions_and_the_newest_served(repo: Path) -> None:
    r = Repository(repo)
    assert r.ids() == ["en-de", "en-fr"]
    assert r.versions("en-fr") == ["1", "2", "10"]  # by number, not by string
    assert r.entry("en-fr").version == "10" and r.entry("en-fr").path == repo / "en-fr" / "10"
    flat = r.entry("en-de")
    assert (flat.version, flat.path) == (FLAT_VERSION, repo / "en-de")
    assert r.entry("en-fr", "2").path == repo / "en-fr" / "2"


def test_a_pinned_version_is_served_until_the_pin_goes(repo: Path) -> None:
    assert Repository(repo, pinned={"en-fr": "2"}).entry("en-fr").version == "2"
    with pytest.raises(RepositoryError, match=r"no version '3' \(on disk: 1, 2, 10\)"):
        Repository(repo, pinned={"en-fr": "3"}).entry("en-fr")


@pytest.mark.parametrize("model", ["..", "../models", "en-fr/1", "a b", "", "/etc"])
def test_ids_that_are_not_names_are_refused(repo: Path, model: str) -> None:
    with pytest.raises(RepositoryError, match="not a valid name"):
        Repository(repo).entry(model)


def test_versions_that_are_not_names_are_refused(repo: Path) -> None:
    with pytest.raises(RepositoryError, match="not a valid name"):
        Repository(repo).entry("en-fr", "../en-de")


def test_symlinks_escaping_the_repository_are_never_followed(repo: Path, tmp_path: Path) -> None:
    outside = bundle(tmp_path / "elsewhere" / "secret")
    (repo / "escape").symlink_to(outside)
    (repo / "en-fr" / "11").symlink_to(outside)
    (repo / "alias").symlink_to(repo / "en-de")  # inside: fine
    r = Repository(repo)
    assert "escape" not in r.ids() and "alias" in r.ids()
    assert r.versions("en-fr")[-1] == "10"
    with pytest.raises(RepositoryError, match="outside the repository"):
        r.entry("escape")


def test_a_repository_of_one_is_its_directory(repo: Path) -> None:
    r = Repository(repo / "en-de", single=True)
    assert r.ids() == ["en-de"] and r.entry("en-de").path == (repo / "en-de").resolve()
    with pytest.raises(RepositoryError, match="serves only 'en-de'"):
        r.entry("en-fr")
    with pytest.raises(RepositoryError, match="no model 'gone'"):
        Repository(repo / "gone", single=True).entry("gone")
