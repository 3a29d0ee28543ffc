"""Per-GEMM cycle reports: the table behind ``s2fp8 cycles``, as text, CSV, JSON, PNG.

:func:`cycle_report` runs the closed-form cycle model (:func:`pysim.perf.cycles.breakdown`,
vectorized over all GEMMs, no per-tile loop) and adds, per GEMM: MACs, utilization
(MACs / (R * C * cycles), cycles including the decode-table loads) and the bytes of
the operands and the result (``count * (M*K + K*N + M*N)`` elements):

- S2FP8: 1 byte per element + 8 bytes (alpha and beta, FP32 each) per tensor, three
  tensors (A, B, C) per GEMM instance: ``elements + 24 * count``;
- FP32: 4 bytes per element.

Renderers return text/bytes; writing is left to the caller (all-or-nothing, see
:func:`pysim.files.atomic_write_many`).
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

import numpy as np

from pysim.numerics.formats import FP32, MANT_BITS_MAX, S2FP8_BASE
from pysim.perf.cycles import CycleBreakdown, breakdown, utilization
from pysim.perf.gemm import Gemm
from pysim.perf.tiler import gemm_arrays

S2FP8_BYTES_PER_ELEMENT = S2FP8_BASE.width // 8
#: alpha and beta, one FP32 each
S2FP8_SCALE_BYTES_PER_TENSOR = 2 * FP32.width // 8
FP32_BYTES_PER_ELEMENT = FP32.width // 8
TENSORS_PER_GEMM = 3

COLUMNS = ("layer", "phase", "M", "K", "N", "count", "MACs", "cycles", "utilization",
           "s2fp8_bytes", "fp32_bytes")


@dataclass
class CycleReport:
    """Per-GEMM arrays (one entry per :class:`Gemm`) and the array configuration."""

    source: str
    rows: int
    cols: int
    mant_bits: int
    gemms: list[Gemm]
    m: np.ndarray
    k: np.ndarray
    n: np.ndarray
    count: np.ndarray
    macs: np.ndarray
    cycles: CycleBreakdown
    utilization: np.ndarray
    s2fp8_bytes: np.ndarray
    fp32_bytes: np.ndarray

    @property
    def total_cycles(self) -> int:
        return int(self.cycles.total.sum())

    @property
    def total_macs(self) -> int:
        return int(self.macs.sum())

    @property
    def total_utilization(self) -> float:
        return float(utilization(self.total_macs, self.total_cycles, self.rows, self.cols))

    def totals(self) -> dict:
        c = self.cycles
        return {"gemms": len(self.gemms), "count": int(self.count.sum()),
                "MACs": self.total_macs, "cycles": self.total_cycles,
                "table_load": int(c.table_load.sum()), "steady": int(c.steady.sum()),
                "tile_overhead": int(c.tile_overhead.sum()),
                "fill_drain": int(c.fill_drain.sum()), "tiles": int(c.tiles.sum()),
                "utilization": self.total_utilization,
                "s2fp8_bytes": int(self.s2fp8_bytes.sum()),
                "fp32_bytes": int(self.fp32_bytes.sum())}

    def rows_as_dicts(self) -> list[dict]:
        """One dict per GEMM. Each column is converted once (``tolist()``: Python ints
        and floats) before the loop: ``self.cycles.total`` sums four arrays, and taking
        it per row made a 100k-GEMM report quadratic (over 10 minutes; bench.report)."""
        c = self.cycles
        columns = {"MACs": self.macs, "cycles": c.total, "utilization": self.utilization,
                   "s2fp8_bytes": self.s2fp8_bytes, "fp32_bytes": self.fp32_bytes,
                   "tiles": c.tiles, "table_load": c.table_load, "steady": c.steady,
                   "tile_overhead": c.tile_overhead, "fill_drain": c.fill_drain}
        keys = ("layer", "phase", "M", "K", "N", "count", *columns)
        values = [np.asarray(array).tolist() for array in columns.values()]
        return [dict(zip(keys, (g.layer, g.phase, g.m, g.k, g.n, g.count, *row)))
                for g, *row in zip(self.gemms, *values)]


def cycle_report(gemms: list[Gemm], rows: int, cols: int, mant_bits: int = MANT_BITS_MAX,
                 source: str = "") -> CycleReport:
    """Cycles, utilization and bytes of every GEMM on an ``rows x cols`` array."""
    gemms = list(gemms)
    shapes = gemm_arrays(gemms)
    cycles = breakdown(shapes.m, shapes.k, shapes.n, rows, cols, shapes.count)
    macs = shapes.macs
    elements = shapes.count * (shapes.m * shapes.k + shapes.k * shapes.n
                               + shapes.m * shapes.n)
    s2fp8 = (elements * S2FP8_BYTES_PER_ELEMENT
             + shapes.count * TENSORS_PER_GEMM * S2FP8_SCALE_BYTES_PER_TENSOR)
    return CycleReport(source, rows, cols, mant_bits, gemms, shapes.m, shapes.k, shapes.n,
                       shapes.count, macs, cycles,
                       utilization(macs, cycles.total, rows, cols),
                       s2fp8, elements * FP32_BYTES_PER_ELEMENT)


# ------------------------------------------------------------------------- text

def _fmt_bytes(value: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value} B"


def format_table(report: CycleReport, quiet: bool = False) -> str:
    """The per-GEMM table (all rows) and a totals row; ``quiet``: totals only."""
    t = report.totals()
    head = (f"{report.source}: {t['gemms']} GEMMs on a {report.rows}x{report.cols} "
            f"array (W={report.mant_bits})")
    lines = [head]
    width = max([len("layer"), len("TOTAL")] + [len(g.layer) for g in report.gemms])
    width = min(width, 48)
    header = (f"{'layer':<{width}} {'phase':<7} {'M':>8} {'K':>8} {'N':>8} {'count':>6} "
              f"{'MACs':>16} {'cycles':>14} {'util':>7} {'S2FP8 B':>14} {'FP32 B':>14}")
    rule = "-" * len(header)
    if not quiet:
        lines += [header, rule]
        for row in report.rows_as_dicts():
            name = row["layer"] if len(row["layer"]) <= width else row["layer"][:width - 1] + "~"
            lines.append(
                f"{name:<{width}} {row['phase']:<7} {row['M']:>8} {row['K']:>8} "
                f"{row['N']:>8} {row['count']:>6} {row['MACs']:>16,} {row['cycles']:>14,} "
                f"{row['utilization']:>7.2%} {row['s2fp8_bytes']:>14,} "
                f"{row['fp32_bytes']:>14,}")
        lines.append(rule)
        lines.append(
            f"{'TOTAL':<{width}} {'':<7} {'':>8} {'':>8} {'':>8} {t['count']:>6} "
            f"{t['MACs']:>16,} {t['cycles']:>14,} {t['utilization']:>7.2%} "
            f"{t['s2fp8_bytes']:>14,} {t['fp32_bytes']:>14,}")
    lines.append(
        f"total: {t['cycles']:,} cycles (table loads {t['table_load']:,}, steady "
        f"{t['steady']:,}, tile overhead {t['tile_overhead']:,}, fill/drain "
        f"{t['fill_drain']:,}), {t['tiles']:,} tiles, {t['MACs']:,} MACs, utilization "
        f"{t['utilization']:.2%}")
    ratio = t["fp32_bytes"] / t["s2fp8_bytes"] if t["s2fp8_bytes"] else float("nan")
    lines.append(f"operand+result bytes: S2FP8 {_fmt_bytes(t['s2fp8_bytes'])}, FP32 "
                 f"{_fmt_bytes(t['fp32_bytes'])} ({ratio:.2f}x)")
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------- files

def to_csv(report: CycleReport) -> str:
    """One row per GEMM (:data:`COLUMNS`) and a final ``TOTAL`` row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in report.rows_as_dicts():
        writer.writerow([row[c] if c != "utilization" else f"{row[c]:.6f}" for c in COLUMNS])
    t = report.totals()
    writer.writerow(["TOTAL", "", "", "", "", t["count"], t["MACs"], t["cycles"],
                     f"{t['utilization']:.6f}", t["s2fp8_bytes"], t["fp32_bytes"]])
    return buffer.getvalue()


def to_json(report: CycleReport, unsupported=()) -> str:
    """The report as JSON: one line per GEMM in ``gemms``, the rest indented.

    ``json.dumps(..., indent=1)`` of the whole report runs Python's pure-Python
    encoder (the C one takes no indent): 5 s of a 100k-GEMM report (bench.report).
    Each GEMM row is encoded by the C encoder instead."""
    data = {"format": "s2fp8-cycles", "version": 1, "source": report.source,
            "array": {"rows": report.rows, "cols": report.cols,
                      "mant_bits": report.mant_bits},
            "totals": report.totals(), "gemms": report.rows_as_dicts(),
            "unsupported": [{"node": u[0], "op_type": u[1]} for u in unsupported]}
    fields = []
    for key, value in data.items():
        if key == "gemms" and value:
            encode = json.JSONEncoder().encode
            text = "[\n  " + ",\n  ".join(map(encode, value)) + "\n ]"
        else:
            text = json.dumps(value, indent=1).replace("\n", "\n ")
        fields.append(f" {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


PHASE_COLORS = {"forward": "#4477aa", "dgrad": "#ee6677", "wgrad": "#228833"}


def to_png(report: CycleReport) -> bytes:
    """Per-GEMM cycles (bars, log scale, coloured by phase) and utilization (line, right
    axis); x ticks name each layer at its first GEMM. Agg backend, no global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    n = len(report.gemms)
    layers_first = []  # (x, layer name) of each layer's first GEMM
    for i, g in enumerate(report.gemms):
        if i == 0 or report.gemms[i - 1].layer != g.layer:
            layers_first.append((i, g.layer))
    width = min(max(8.0, 0.12 * n + 2), 60.0)
    fig = Figure(figsize=(width, 6.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(n)
    colors = [PHASE_COLORS.get(g.phase, "#999999") for g in report.gemms]
    ax.bar(x, report.cycles.total, width=0.85, color=colors)
    ax.set_yscale("log")
    top = float(np.max(report.cycles.total)) if n else 1.0
    ax.set_ylim(max(1.0, float(np.min(report.cycles.total)) / 2), top * 12)  # legend room
    ax.set_ylabel("cycles (incl. table loads, log)")
    ax.set_xlim(-0.6, n - 0.4)
    step = max(1, -(-len(layers_first) // 120))
    ticks = layers_first[::step]
    ax.set_xticks([i for i, _ in ticks])
    fontsize = 7 if len(ticks) <= 60 else 5
    ax.set_xticklabels([name for _, name in ticks], rotation=90, fontsize=fontsize)
    ax.grid(axis="y", which="major", alpha=0.3)
    util_ax = ax.twinx()
    util_ax.plot(x, report.utilization, color="black", linewidth=1.0, marker=".",
                 markersize=3 if n > 50 else 5)
    util_ax.set_ylim(0, 1.3)
    util_ax.set_ylabel("utilization")
    handles = [Patch(color=c, label=p) for p, c in PHASE_COLORS.items()
               if any(g.phase == p for g in report.gemms)]
    from matplotlib.lines import Line2D
    handles.append(Line2D([], [], color="black", marker=".", label="utilization"))
    ax.legend(handles=handles, loc="upper left", ncol=len(handles), fontsize=8,
              framealpha=0.9)
    t = report.totals()
    ax.set_title(f"{report.source}: {n} GEMMs on {report.rows}x{report.cols}, "
                 f"{t['cycles']:,} cycles, utilization {t['utilization']:.1%}",
                 fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
