"""Captured operand tensors of a trace: references (``file.npz#name``,
``file.safetensors#name``, ``file.npy``), reading them, and the finite check."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pysim.errors import TraceError
from pysim.numerics.fp8 import first_index

#: tensor file kinds
TENSOR_SUFFIXES = (".npz", ".npy", ".safetensors")


@dataclass(frozen=True)
class TensorRef:
    """A reference to a captured tensor: ``file.npz#name``, ``file.safetensors#name`` or
    ``file.npy``. ``text`` is the reference as written, ``path`` the resolved file."""

    text: str
    path: Path
    key: str | None

    @property
    def kind(self) -> str:
        return self.path.suffix.lower()


def parse_tensor_ref(text, base: Path, where: str) -> TensorRef:
    """``file.npz#name`` / ``file.safetensors#name`` / ``file.npy``, relative to ``base``;
    the file must exist (its contents are read lazily)."""
    if not isinstance(text, str) or not text:
        raise TraceError(f"{where}: must be a string 'file.npz#name', "
                         f"'file.safetensors#name' or 'file.npy', got {text!r}")
    file, sep, key = text.rpartition("#") if "#" in text else (text, "", "")
    suffix = Path(file).suffix.lower()
    if suffix not in TENSOR_SUFFIXES:
        raise TraceError(f"{where}: file {file!r} must end in "
                         f"{', '.join(TENSOR_SUFFIXES)}, got {text!r}")
    if suffix == ".npy":
        if sep:
            raise TraceError(f"{where}: a .npy file holds one array, no '#name': "
                             f"got {text!r}")
        key = None
    elif not key:
        raise TraceError(f"{where}: a {suffix} reference needs an array name "
                         f"('{file}#name'), got {text!r}")
    path = (base / file) if not os.path.isabs(file) else Path(file)
    path = Path(os.path.normpath(path.absolute()))
    if not path.is_file():
        raise TraceError(f"{where}: tensor file {file!r} not found (resolved to {path})")
    return TensorRef(text, path, key)


def read_tensor(ref: TensorRef, where: str) -> np.ndarray:
    """The array ``ref`` names, of a real number dtype; every problem (missing file or
    name, corrupt archive, missing ``safetensors`` package) raises :class:`TraceError`
    prefixed with ``where``."""
    if not ref.path.is_file():
        raise TraceError(f"{where}: file {ref.text.split('#')[0]!r} not found "
                         f"(resolved to {ref.path})")
    kind = ref.kind
    try:
        if kind == ".npy":
            array = np.load(ref.path, allow_pickle=False)
        elif kind == ".npz":
            with np.load(ref.path, allow_pickle=False) as archive:
                if ref.key not in archive.files:
                    names = ", ".join(archive.files[:10]) or "none"
                    raise TraceError(f"{where}: no array {ref.key!r} in {ref.path} "
                                     f"(it holds: {names})")
                array = archive[ref.key]
        else:
            try:
                from safetensors import safe_open
            except ImportError:
                raise TraceError(f"{where}: reading .safetensors files needs the "
                                 f"optional 'safetensors' package (pip install "
                                 f"safetensors), or convert the tensors to .npz") from None
            with safe_open(str(ref.path), framework="np") as archive:
                keys = list(archive.keys())
                if ref.key not in keys:
                    names = ", ".join(keys[:10]) or "none"
                    raise TraceError(f"{where}: no tensor {ref.key!r} in {ref.path} "
                                     f"(it holds: {names})")
                array = archive.get_tensor(ref.key)
    except TraceError:
        raise
    except Exception as error:  # corrupt archive, bad header, unsupported dtype...
        raise TraceError(f"{where}: cannot read {ref.path}: "
                         f"{type(error).__name__}: {error}") from None
    array = np.asarray(array)
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.floating)
                                       or np.issubdtype(array.dtype, np.integer)):
        raise TraceError(f"{where}: dtype {array.dtype} is not a real number type")
    return array


def check_finite(array: np.ndarray, where: str) -> None:
    """:class:`TraceError` counting the NaN and Inf values of a float array."""
    if not np.issubdtype(array.dtype, np.floating):
        return
    bad = ~np.isfinite(array)
    if bad.any():
        nans = int(np.isnan(array).sum())
        infs = int(bad.sum()) - nans
        raise TraceError(f"{where}: {nans} NaN and {infs} Inf values (first at index "
                         f"{first_index(bad)})")
