"""Per-GEMM cycle reports: the table behind ``s2fp8 cycles``, as text, CSV, JSON, PNG.

:func:`cycle_report` runs the closed-form cycle model (:func:`pysim.perf.cycles.breakdown`,
vectorized over all GEMMs, no per-tile loop) and adds, per GEMM: MACs, utilization
(MACs / (R * C * cycles), cycles including the decode-table loads) and the bytes of
the operands and the result (``count * (M*K + K*N + M*N)`` elements):

- S2FP8: 1 byte per element + 8 bytes (alpha and beta, FP32 each) per tensor, three
  tensors (A, B, C) per GEMM instance: ``elements + 24 * count``;
- FP32: 4 bytes per element.

The output path's cycles (``CycleBreakdown.output_path``: statistics latency, scalar
step, threshold writes, encode pass; docs/datapath.md) are reported beside the array's,
not in ``cycles``: a line in the text totals, ``output_path`` per GEMM and in the JSON
totals (with ``layer_cycles``, S2FP8 in to S2FP8 out).

Renderers return text/bytes; writing is left to the caller (all-or-nothing, see
:func:`pysim.files.atomic_write_many`).
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

import numpy as np

from pysim.errors import ShapeError
from pysim.numerics.formats import FP32, MANT_BITS_MAX, S2FP8_BASE
from pysim.perf.arch import ArrayConfig
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
    #: the accumulator loop depth L (``ArrayConfig.acc_stages``; 1: the compact array)
    acc_stages: int = 1

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
                "output_path": int(c.output_path.sum()),
                "layer_cycles": int(c.layer_total.sum()),
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
                   "tile_overhead": c.tile_overhead, "fill_drain": c.fill_drain,
                   "output_path": c.output_path}
        keys = ("layer", "phase", "M", "K", "N", "count", *columns)
        values = [np.asarray(array).tolist() for array in columns.values()]
        return [dict(zip(keys, (g.layer, g.phase, g.m, g.k, g.n, g.count, *row)))
                for g, *row in zip(self.gemms, *values)]


def cycle_report(gemms: list[Gemm], rows: int, cols: int, mant_bits: int = MANT_BITS_MAX,
                 source: str = "", acc_stages: int = 1) -> CycleReport:
    """Cycles, utilization and bytes of every GEMM on an ``rows x cols`` array (with an
    ``acc_stages``-deep accumulator loop: L tiles interleaved, docs/array.md)."""
    gemms = list(gemms)
    shapes = gemm_arrays(gemms)
    config = ArrayConfig(rows, cols, mant_bits, acc_stages)
    try:
        cycles = breakdown(shapes.m, shapes.k, shapes.n, config, count=shapes.count)
    except ShapeError as error:   # a limit of the array (K's port width): name the layer
        if error.index is None or error.index >= len(gemms):
            raise
        gemm = gemms[error.index]
        raise ShapeError(f"layer {gemm.layer!r} ({gemm.phase}): {error}") from None
    macs = shapes.macs
    elements = shapes.count * (shapes.m * shapes.k + shapes.k * shapes.n
                               + shapes.m * shapes.n)
    s2fp8 = (elements * S2FP8_BYTES_PER_ELEMENT
             + shapes.count * TENSORS_PER_GEMM * S2FP8_SCALE_BYTES_PER_TENSOR)
    return CycleReport(source, rows, cols, mant_bits, gemms, shapes.m, shapes.k, shapes.n,
                       shapes.count, macs, cycles,
                       utilization(macs, cycles.total, rows, cols),
                       s2fp8, elements * FP32_BYTES_PER_ELEMENT, config.acc_stages)


# ------------------------------------------------------------------------- text

def _fmt_bytes(value: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value} B"


def format_table(report: CycleReport, quiet: bool = False) -> str:
    """The per-GEMM table (all rows) and a totals row; ``quiet``: totals only."""
    t = report.totals()
    loop = (f", {report.acc_stages}-deep accumulator loop: {report.acc_stages} tiles "
            f"interleaved" if report.acc_stages > 1 else "")
    head = (f"{report.source}: {t['gemms']} GEMMs on a {report.rows}x{report.cols} "
            f"array (W={report.mant_bits}{loop})")
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
    extra = t["output_path"] / t["cycles"] if t["cycles"] else float("nan")
    lines.append(
        f"output path (S2FP8 out, after each GEMM's last result row): {t['output_path']:,} "
        f"cycles (+{extra:.2%}); S2FP8 in to S2FP8 out: {t['layer_cycles']:,} cycles")
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
                      "mant_bits": report.mant_bits, "acc_stages": report.acc_stages},
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
    """Where the cycles go, legible at any number of GEMMs (always 1600x750 px).

    Left: the :data:`PLOT_TOP_LAYERS` layers with the most cycles, stacked by phase, each
    with its share of the total and its utilization, the rest summed into one "others"
    line; linear axis, so the bars compare as the cycles do. Right: the share of all
    cycles spent at each utilization (cycle-weighted histogram, log axis). The
    title gives the totals, then the finding: how few layers hold half of the cycles and
    how many cycles run below 50% utilization. (One bar per GEMM made ResNet-50's 161
    GEMMs a 2132 px row of bars of equal height on a log axis, and 10,000 GEMMs a
    6000 px strip.) Agg backend, no global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=PLOT_SIZE_INCHES, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    bars_ax, util_ax = fig.subplots(1, 2, width_ratios=(1.7, 1.0))
    cycles = np.asarray(report.cycles.total, dtype=np.float64)  # object arrays above int64
    total = float(cycles.sum())
    layers = _cycles_by_layer(report, cycles)
    phases = [p for p in PHASE_COLORS if any(g.phase == p for g in report.gemms)]
    phases += sorted({g.phase for g in report.gemms} - set(phases))
    _plot_top_layers(bars_ax, layers, phases, total, report)
    _plot_utilization_share(util_ax, report, cycles, total)
    t = report.totals()
    fig.suptitle(f"{report.source}: {t['gemms']:,} GEMMs in {len(layers):,} layers on "
                 f"{report.rows}x{report.cols}, {t['cycles']:,} cycles, utilization "
                 f"{t['utilization']:.1%}\n{_cycles_finding(layers, report, cycles, total)}",
                 fontsize=12)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


#: Layers named in the cycles plot; the others share one bar.
PLOT_TOP_LAYERS = 20
#: The cycles plot's size (inches at 100 dpi): 1600x750 px whatever the input.
PLOT_SIZE_INCHES = (16.0, 7.5)
_LABEL_CHARS = 32


def _cycles_by_layer(report: CycleReport, cycles: np.ndarray) -> dict:
    """layer -> {"phases": {phase: cycles}, "cycles", "macs"}, in order of appearance."""
    layers: dict[str, dict] = {}
    macs = np.asarray(report.macs, dtype=np.float64)
    for g, c, m in zip(report.gemms, cycles.tolist(), macs.tolist()):
        entry = layers.setdefault(g.layer, {"phases": {}, "cycles": 0.0, "macs": 0.0})
        entry["phases"][g.phase] = entry["phases"].get(g.phase, 0.0) + c
        entry["cycles"] += c
        entry["macs"] += m
    return layers


def _layer_utilization(entry: dict, report: CycleReport) -> float:
    return entry["macs"] / (entry["cycles"] * report.rows * report.cols) if entry["cycles"] else 0.0


def _plot_top_layers(ax, layers: dict, phases: list, total: float, report: CycleReport) -> None:
    ranked = sorted(layers.items(), key=lambda item: -item[1]["cycles"])
    bars = ranked if len(ranked) <= PLOT_TOP_LAYERS + 1 else ranked[:PLOT_TOP_LAYERS]
    rest = ranked[len(bars):]
    y = np.arange(len(bars))
    left = np.zeros(len(bars))
    for phase in phases:
        widths = np.array([entry["phases"].get(phase, 0.0) for _, entry in bars])
        ax.barh(y, widths, left=left, height=0.75, color=PHASE_COLORS.get(phase, "#999999"),
                label=phase)
        left += widths

    def share(entry):
        return (f"{entry['cycles'] / total if total else 0.0:.1%}, "
                f"util {_layer_utilization(entry, report):.0%}")

    for yi, (_, entry) in zip(y, bars):
        ax.text(entry["cycles"], yi, f" {share(entry)}", va="center", fontsize=8)
    labels = [name if len(name) <= _LABEL_CHARS else name[:_LABEL_CHARS - 1] + "\u2026"
              for name, _ in bars]
    if rest:  # a text row, not a bar: a bar of the many others would dwarf the top layers
        others = {"cycles": sum(e["cycles"] for _, e in rest),
                  "macs": sum(e["macs"] for _, e in rest)}
        ax.text(0, len(bars), f" the other {len(rest):,} layers: {share(others)}",
                va="center", fontsize=9, style="italic")
        labels.append("others")
    ax.set_yticks(np.arange(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylim(len(labels) - 0.4, -0.6)  # top layer first
    ax.set_xlim(0, max(left.max(), 1.0) * 1.25)  # room for the share labels
    ax.set_xlabel("cycles (incl. table loads)")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"the {len(bars)} layers with the most cycles: share of all cycles, "
                 "utilization", fontsize=10)
    ax.legend(loc="lower right", fontsize=8, title="phase", title_fontsize=8)


def _plot_utilization_share(ax, report: CycleReport, cycles: np.ndarray, total: float) -> None:
    utilization = np.asarray(report.utilization, dtype=np.float64)
    ax.hist(utilization, bins=np.linspace(0.0, 1.0, 21),
            weights=100.0 * cycles / (total or 1.0), color="#555555")
    ax.set_yscale("log")  # a 0.1% share at low utilization stays visible beside 90%
    ax.set_ylim(0.01, 200.0)
    overall = report.total_utilization
    ax.axvline(overall, color="black", linewidth=1.0, linestyle="--")
    ax.text(overall, 150.0, f"overall {overall:.1%} ", ha="right", va="top", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("utilization of the GEMM (MACs / (cycles x rows x cols))")
    ax.set_ylabel("share of all cycles (%, log)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("where the cycles run: utilization, weighted by cycles", fontsize=10)


def _cycles_finding(layers: dict, report: CycleReport, cycles: np.ndarray, total: float) -> str:
    """One line: how many layers hold half of the cycles, and the cycles below 50% use."""
    if not total:
        return "no cycles"
    ranked = np.sort(np.array([entry["cycles"] for entry in layers.values()]))[::-1]
    half = int(np.searchsorted(np.cumsum(ranked), total / 2)) + 1
    low = float(cycles[np.asarray(report.utilization, dtype=np.float64) < 0.5].sum()) / total
    return (f"half of the cycles are in {half:,} of {len(layers):,} layers; "
            f"{low:.1%} of the cycles run below 50% utilization")
