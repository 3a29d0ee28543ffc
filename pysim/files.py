"""Writing output files atomically: a leaf module every layer may import.

The one atomic-write helper of the project. Every file goes first to a temp file in its
own directory (so the final ``os.replace`` is a rename on one file system), and only when
every temp file of a command is written are they renamed into place: a reader never sees
a partial file, and a failure leaves no output and no temp file behind.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pysim.errors import BadInput


def atomic_write(path, data: bytes | str) -> None:
    """Write ``data`` (``str`` as UTF-8) to ``path`` atomically; errors raise
    :class:`BadInput` naming the path."""
    atomic_write_many({path: data})


def atomic_write_many(outputs: dict) -> None:
    """Write several files ``{path: bytes | str}`` all-or-nothing: every temp file is
    written first; only if all succeed are they renamed into place. A failure (e.g. a
    missing directory) leaves no temp file behind and raises :class:`BadInput` naming
    the path. Files are written with mode 0o644."""
    for path in outputs:
        if Path(path).is_dir():
            raise BadInput(f"{path}: cannot write: is a directory")
    staged = []
    try:
        for path, data in outputs.items():
            path = Path(path)
            payload = data.encode("utf-8") if isinstance(data, str) else data
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                           dir=path.parent if str(path.parent) else ".")
            except OSError as error:
                raise BadInput(f"{path}: cannot write: {error.strerror or error}") from None
            staged.append((tmp, path))
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(payload)
                os.chmod(tmp, 0o644)
            except OSError as error:
                raise BadInput(f"{path}: cannot write: {error.strerror or error}") from None
        for tmp, path in staged:
            try:
                os.replace(tmp, path)
            except OSError as error:
                raise BadInput(f"{path}: cannot write: {error.strerror or error}") from None
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
