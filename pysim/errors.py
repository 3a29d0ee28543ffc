"""The project's error types: a leaf module every layer may import.

``BadInput`` is a user error (a file, line, layer, field or value that is wrong): the CLI
reports it in one line and exits with code 2. Every other exception escaping a command is
a bug: one line, exit code 1 (``S2FP8_DEBUG=1`` shows the traceback).
"""


class BadInput(Exception):
    """A user error (file, field, value): reported in one line, exit code 2."""


class ShapeError(BadInput, ValueError):
    """An invalid layer, GEMM or tiling parameter (a ``ValueError`` and a ``BadInput``).

    ``index``: for a check over an array of GEMMs, the position of the first bad one, so
    a caller that knows the GEMMs' names can say which layer it was."""

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


class TraceError(BadInput):
    """An invalid trace, trace file or captured tensor (a ``BadInput``, exit 2)."""
