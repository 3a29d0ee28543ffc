"""SCALE-Sim topology CSV files -> a trace.

SCALE-Sim (https://github.com/scalesim-project/scale-sim-v2) describes a network in
one of two CSV forms; both are read:

- **conv** (``topologies/conv_nets/*.csv``)::

    Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
    Conv1     ,224         ,224        ,11           ,11          ,3       ,96        ,4      ,

  ``Strides`` may instead be two columns ``Stride height, Stride width`` (what
  SCALE-Sim's ``write_topo_file`` writes). Each row becomes a forward
  :class:`~pysim.workload.layers.Conv2d` with batch 1 (``--batch`` overrides it) and
  SCALE-Sim's output size ``ceil((ifmap - filter + stride) / stride)`` (its
  ``topology_utils.py``). SCALE-Sim has no padding column (its IFMAP sizes already
  include any padding), but its output size counts a last window that runs past the
  IFMAP whenever ``(ifmap - filter)`` is not a multiple of the stride; PyTorch's floor
  formula with padding 0 drops it (MobileNet's 226 -> 3x3/2: 112 rows, SCALE-Sim 113).
  So the Conv2d gets the smallest symmetric padding that gives SCALE-Sim's size
  (:func:`scalesim_padding`; 0 when the stride divides). A layer whose name contains ``DP`` is depthwise in SCALE-Sim (expanded into
  ``Channels`` single-channel convolutions); here it is one grouped Conv2d with
  ``groups = Channels`` and ``out_channels = Channels * Num Filter``: the same GEMMs.
  The GEMM of a row, as SCALE-Sim defines it: ``M = ofmap_h * ofmap_w``,
  ``K = filter_h * filter_w * channels``, ``N = num_filter``.

- **GEMM** (``topologies/GEMM_mnk/*.csv``)::

    Layer, M, N, K,
    fc1, 256, 128, 2048,

  Each row becomes a forward :class:`~pysim.workload.layers.Linear` whose GEMM is exactly
  ``(M, K, N)``: ``batch = M``, ``in_features = K``, ``out_features = N``. (SCALE-Sim
  itself runs it as a conv with IFMAP M x K and filter 1 x K.)

Header cells are matched case- and whitespace-insensitively; a trailing comma, blank
lines, rows with only empty cells and extra columns after the known ones (some shipped
files have them) are ignored. Errors name the file, the line, the column and the value.
"""
from __future__ import annotations

import re
from pathlib import Path

from pysim.validate import parse_int_text
from pysim.workload.layers import PHASES, Conv2d, Linear
from pysim.workload.trace import Trace, TraceError, TraceLayer, read_input_text

CONV_COLUMNS = ("layer name", "ifmap height", "ifmap width", "filter height",
                "filter width", "channels", "num filter", "strides")
CONV_COLUMNS_2STRIDES = CONV_COLUMNS[:-1] + ("stride height", "stride width")
GEMM_COLUMNS = ("layer", "m", "n", "k")


def _norm(cell: str) -> str:
    return re.sub(r"\s+", " ", cell.strip().lower())


def _cells(line: str) -> list[str]:
    cells = line.rstrip("\r\n").split(",")
    if len(cells) > 1 and cells[-1].strip() == "":
        cells = cells[:-1]  # the trailing comma SCALE-Sim writes
    return cells


def _form(header: list[str], display: str, line_no: int) -> tuple[str, tuple[str, ...]]:
    names = [_norm(c) for c in header]
    if names[0] == "layer name" and names[1:2] != ["m"]:
        for columns in (CONV_COLUMNS_2STRIDES, CONV_COLUMNS):
            if tuple(names[:len(columns)]) == columns:
                return "conv", columns
        expected = ", ".join(c.title() for c in CONV_COLUMNS)
    elif names[0] in ("layer", "layer name"):
        if tuple(names[1:4]) == GEMM_COLUMNS[1:]:
            return "gemm", GEMM_COLUMNS
        expected = "Layer, M, N, K"
    else:
        expected = ("'Layer name, IFMAP Height, ...' (conv) or 'Layer, M, N, K' (GEMM)")
    raise TraceError(f"{display}: line {line_no}: not a SCALE-Sim topology header: "
                     f"expected {expected}, got {','.join(header).strip()!r}")


def scalesim_output_size(size: int, filt: int, stride: int) -> int:
    """SCALE-Sim's output size: ``ceil((size - filt + stride) / stride)``."""
    return -(-(size - filt + stride) // stride)


def scalesim_padding(size: int, filt: int, stride: int) -> int:
    """The smallest symmetric padding ``p`` with which the floor formula
    ``(size + 2p - filt) // stride + 1`` gives :func:`scalesim_output_size`.

    With ``r = (size - filt) % stride > 0`` the windows SCALE-Sim counts cover
    ``stride - r`` positions past the IFMAP, so ``2p >= stride - r``; and
    ``2p = stride - r + 1`` at most stays below the ``2 * stride - r`` that would add
    another output row.
    """
    remainder = (size - filt) % stride
    return 0 if remainder == 0 else (stride - remainder + 1) // 2


def import_scalesim(path, batch: int | None = None, training: bool = False) -> Trace:
    """Read a SCALE-Sim topology CSV (conv or GEMM form) into a :class:`Trace`.

    ``batch`` (conv form only; default 1) sets the Conv2d batch; given for a GEMM-form
    file it is an error (it would be ignored). With ``training`` every
    layer runs forward, dgrad and wgrad, except the first layer's dgrad (its input is
    the network input).
    """
    path = Path(path)
    display = str(path)
    text = read_input_text(path, encoding="utf-8-sig")
    batch_given = batch is not None
    if batch is None:
        batch = 1
    form = columns = None
    layers: list[TraceLayer] = []
    names: dict[str, int] = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        cells = _cells(line)
        if all(c.strip() == "" for c in cells):
            continue
        if form is None:
            form, columns = _form(cells, display, line_no)
            if form == "gemm" and batch_given:
                raise TraceError(f"{display}: line {line_no}: a batch ({batch}) does not "
                                 f"apply to a GEMM-form CSV (its M is the batch)")
            column_titles = [c.strip() for c in cells[:len(columns)]]
            continue
        if len(cells) < len(columns):
            raise TraceError(f"{display}: line {line_no}: column "
                             f"{column_titles[len(cells)]!r}: missing (the row has "
                             f"{len(cells)} of {len(columns)} values)")
        name = cells[0].strip() or f"line{line_no}"
        values = []
        for title, cell in zip(column_titles[1:], cells[1:len(columns)]):
            values.append(parse_int_text(
                cell, f"{display}: line {line_no}: layer {name!r}: column {title!r}:",
                minimum=1, error=TraceError))
        if name in names:  # SCALE-Sim does not require unique names; a trace does
            names[name] += 1
            name = f"{name}#{names[name]}"
        names.setdefault(name, 1)
        needs_input_grad = bool(layers)
        try:
            if form == "gemm":
                m, n, k = values
                layer = Linear(name, batch=m, in_features=k, out_features=n,
                               needs_input_grad=needs_input_grad)
            else:
                ih, iw, fh, fw, channels, filters, sh = values[:7]
                sw = values[7] if len(values) > 7 else sh
                for title, size, filt in ((column_titles[1], ih, fh), (column_titles[2], iw, fw)):
                    if filt > size:
                        raise TraceError(
                            f"{display}: line {line_no}: layer {name!r}: column "
                            f"{title!r}: {size} is smaller than the filter ({filt})")
                groups = channels if "DP" in name else 1
                padding = (scalesim_padding(ih, fh, sh), scalesim_padding(iw, fw, sw))
                layer = Conv2d(name, batch, channels, filters * groups, ih, iw,
                               kernel=(fh, fw), stride=(sh, sw), padding=padding,
                               groups=groups, needs_input_grad=needs_input_grad)
        except TraceError:
            raise
        except Exception as error:  # ShapeError from the layer's own checks
            raise TraceError(f"{display}: line {line_no}: {error}") from None
        phases = PHASES if training else ("forward",)
        layers.append(TraceLayer(layer, phases, 1, {}, f"{path.name}:{line_no}"))
    if form is None:
        raise TraceError(f"{display}: empty file (no SCALE-Sim header)")
    if not layers:
        raise TraceError(f"{display}: no layers after the header")
    return Trace(path.stem, layers, None, f"scalesim-{form}:{path.name}")
