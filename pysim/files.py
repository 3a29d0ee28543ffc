"""Writing output files all-or-nothing: a leaf module every layer may import.

The one output-file helper of the project (docs in README "Exit codes and files").
:func:`atomic_write_many` writes every output of a command or none:

- a **regular file** (new, or existing: replaced) is written to a temp file in its own
  directory (the final ``os.replace`` is a rename on one file system); only when every
  temp file is written are they renamed into place, each existing file first kept as
  a hard-linked backup, so a failing rename puts back the files already replaced. A
  replaced file keeps its permission bits; a new one gets ``0666 & ~umask``. A
  **symbolic link** to a regular file is followed: its target is replaced, the link
  stays a link;
- a **device node, FIFO or socket** (``/dev/null``, ``/dev/stdout``) is never replaced
  by a regular file: it is written through, after every temp file is ready and before
  any rename, so its failure (``/dev/full``) still leaves no file changed;
- refused as bad input (:class:`BadInput`, exit 2), before anything is written: a
  directory, a symbolic link to nothing, an output that is one of the command's input
  files (``accuracy trace.json --csv trace.json``), the same file given twice.

A reader never sees a partial file; a failure leaves no output and no temp file behind.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pysim.errors import BadInput


def atomic_write(path, data: bytes | str, inputs=()) -> None:
    """Write ``data`` (``str`` as UTF-8) to ``path`` atomically; ``inputs``: files the
    command reads, which must not be overwritten. Errors raise :class:`BadInput`."""
    atomic_write_many({path: data}, inputs)


@dataclass
class _Output:
    shown: Path          # the path as the user gave it (messages)
    target: Path         # where the bytes go (symbolic links resolved for regular files)
    payload: bytes
    through: bool        # a device/FIFO/socket: written through, never replaced
    mode: int | None     # permission bits of the file replaced (None: a new file)
    temp: str | None = None
    backup: str | None = None
    replaced: bool = False


def _fail(path, what) -> BadInput:
    if isinstance(what, OSError):
        what = what.strerror or str(what)
    return BadInput(f"{path}: cannot write: {what}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _plan(path, data, inputs: list[Path]) -> _Output:
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    try:
        info = os.stat(path)                 # follows symbolic links
    except FileNotFoundError:
        if os.path.islink(path):
            raise _fail(path, "a symbolic link to a missing file") from None
        return _Output(path, path, payload, through=False, mode=None)
    except OSError as error:
        raise _fail(path, error) from None
    if stat.S_ISDIR(info.st_mode):
        raise _fail(path, "is a directory")
    for source in inputs:
        try:
            if os.path.samefile(source, path):
                raise _fail(path, f"it is an input of this command ({source})")
        except OSError:
            continue                         # an input that does not exist
    if stat.S_ISREG(info.st_mode):
        return _Output(path, Path(os.path.realpath(path)), payload, through=False,
                       mode=stat.S_IMODE(info.st_mode))
    return _Output(path, path, payload, through=True, mode=None)


def _stage(out: _Output, new_mode: int) -> None:
    try:
        fd, out.temp = tempfile.mkstemp(prefix=f".{out.target.name}.", suffix=".tmp",
                                        dir=out.target.parent)
    except OSError as error:
        raise _fail(out.shown, error) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(out.payload)
        os.chmod(out.temp, new_mode if out.mode is None else out.mode)
    except OSError as error:
        raise _fail(out.shown, error) from None


def _write_through(out: _Output) -> None:
    try:
        with open(out.target, "wb") as handle:
            handle.write(out.payload)
    except OSError as error:
        raise _fail(out.shown, error) from None


def _replace(out: _Output) -> None:
    """Rename the temp file over the target, keeping the old file as a backup."""
    if out.mode is not None:
        out.backup = out.temp + ".old"
        try:
            os.link(out.target, out.backup)
        except OSError:                      # no hard links here: a copy
            shutil.copy2(out.target, out.backup)
    os.replace(out.temp, out.target)
    out.replaced = True


def _roll_back(out: _Output) -> None:
    if out.backup is not None:
        os.replace(out.backup, out.target)
    else:
        os.unlink(out.target)
    out.backup, out.replaced = None, False


def _plans(outputs, inputs) -> list[_Output]:
    """Plans of ``outputs`` ((path, data) pairs), refusals checked."""
    inputs = [Path(p) for p in inputs]
    plans = [_plan(path, data, inputs) for path, data in outputs]
    seen: dict[str, Path] = {}
    for out in plans:
        key = os.path.realpath(out.target)
        if key in seen:
            raise _fail(out.shown, f"the same file as {seen[key]}, given twice")
        seen[key] = out.shown
    return plans


def check_outputs(paths, inputs=()) -> None:
    """The refusals of :func:`atomic_write_many` for ``paths``, without writing: call it
    before a long computation so bad output paths fail first."""
    _plans([(path, b"") for path in paths if path], inputs)


def atomic_write_many(outputs: dict, inputs=()) -> None:
    """Write several files ``{path: bytes | str}`` all-or-nothing (see the module doc).
    ``inputs``: the files the command read (trace, tensors, ...): an output that is one
    of them is refused. Errors raise :class:`BadInput` naming the path."""
    plans = _plans(outputs.items(), inputs)
    new_mode = 0o666 & ~_umask()
    try:
        for out in plans:
            if not out.through:
                _stage(out, new_mode)
        for out in plans:
            if out.through:
                _write_through(out)
        regular = [out for out in plans if not out.through]
        try:
            for out in regular:
                _replace(out)
        except OSError as error:
            failed = next(out for out in regular if not out.replaced)
            for out in reversed(regular):
                if out.replaced:
                    _roll_back(out)
            raise _fail(failed.shown, error) from None
    finally:
        for out in plans:
            for leftover in (out.temp, out.backup):
                if leftover is not None and os.path.lexists(leftover):
                    os.unlink(leftover)
