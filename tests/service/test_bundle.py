import json
import re
import shutil
from pathlib import Path

import pytest

from service.bundle import (
    FORMAT_VERSION,
    MANIFEST,
    TOKENIZER,
    BundleError,
    read_manifest,
    sha256_file,
    verify_bundle,
)
from tests.conftest import DECODER_FILE, ENCODER_FILE


@pytest.fixture
def bundle_copy(default_bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(default_bundle, target)
    return target


def test_shipped_bundle_verifies(default_bundle: Path) -> None:
    manifest = verify_bundle(default_bundle)
    assert manifest.format_version == FORMAT_VERSION
    assert (manifest.source_lang, manifest.target_lang) == ("en", "de")
    assert manifest.variants and {"fp32_beam4", "int8_beam4"} <= manifest.metrics.keys()
    for name, digest in manifest.files.items():
        assert sha256_file(default_bundle / name) == digest
    assert manifest.parity["log_probs"] < 1e-4
    size = sum(p.stat().st_size for p in default_bundle.iterdir())
    assert size <= 25 * 1024 * 1024


def test_tampered_file_is_rejected(bundle_copy: Path) -> None:
    with (bundle_copy / DECODER_FILE).open("r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(BundleError, match=f"{re.escape(DECODER_FILE)} was altered"):
        verify_bundle(bundle_copy)


def test_missing_file_is_rejected(bundle_copy: Path) -> None:
    (bundle_copy / TOKENIZER).unlink()
    with pytest.raises(BundleError, match=r"spm\.model is missing"):
        verify_bundle(bundle_copy)


@pytest.mark.parametrize("name", ["../outside.txt", "sub/file", "link"])
def test_a_manifest_never_reads_outside_its_bundle(bundle_copy: Path, name: str) -> None:
    outside = bundle_copy.parent / "outside.txt"
    outside.write_text("secret")
    (bundle_copy / "link").symlink_to(outside)
    path = bundle_copy / MANIFEST
    data = json.loads(path.read_text())
    data["files"][name] = sha256_file(outside)
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="names files in its own directory only"):
        verify_bundle(bundle_copy)


def test_unknown_format_version_is_rejected(bundle_copy: Path) -> None:
    path = bundle_copy / MANIFEST
    data = json.loads(path.read_text())
    data["format_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="format_version 99 is not supported"):
        read_manifest(bundle_copy)


def test_manifest_must_list_every_model_file(bundle_copy: Path) -> None:
    path = bundle_copy / MANIFEST
    data = json.loads(path.read_text())
    del data["files"][ENCODER_FILE]
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=f"no sha256 for {re.escape(ENCODER_FILE)}"):
        verify_bundle(bundle_copy)


@pytest.mark.parametrize("content", ["", "[]", "{not json", '{"format_version": 1}'])
def test_broken_manifest_is_rejected(bundle_copy: Path, content: str) -> None:
    (bundle_copy / MANIFEST).write_text(content)
    with pytest.raises(BundleError):
        read_manifest(bundle_copy)


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"is .* a model bundle"):
        verify_bundle(tmp_path)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("decoding", {"beam_rule": "fairseq"}, "beam_rule 'fairseq'"),
    ("decoding", {"length_penalty": 1.0, "max_len": 9}, "max_len"),
    ("tokenizer", {"type": "sentencepiece", "lowercase": True}, "lowercase")])
def test_unknown_decoding_or_tokenizer_settings_are_rejected(bundle_copy: Path, key: str,
                                                              value: dict[str, object],
                                                              message: str) -> None:
    path = bundle_copy / "manifest.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {key: value}))
    with pytest.raises(BundleError, match=message):
        verify_bundle(bundle_copy)
