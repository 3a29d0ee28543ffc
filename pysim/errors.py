"""The project's error types: a leaf module every layer may import.

``BadInput`` is a user error (a file, line, layer, field or value that is wrong): the CLI
reports it in one line and exits with code 2. Every other exception escaping a command is
a bug: one line, exit code 1 (``S2FP8_DEBUG=1`` shows the traceback).
"""


class BadInput(Exception):
    """A user error (file, field, value): reported in one line, exit code 2."""


class ShapeError(BadInput, ValueError):
    """An invalid layer, GEMM or tiling parameter (a ``ValueError`` and a ``BadInput``)."""


class TraceError(BadInput):
    """An invalid trace, trace file or captured tensor (a ``BadInput``, exit 2)."""
