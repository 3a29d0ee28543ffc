"""Roofline PNG of a memory report: every GEMM a point per operand format.

x: arithmetic intensity, MACs per DRAM byte (reads + writes, metadata included);
y: achieved MACs per cycle (MACs / modelled cycles, stalls included); a point's area is
proportional to the GEMM's cycles (the largest GEMM of the report the largest point),
so the GEMMs the step's time is spent in stand
out (a training step repeats shapes: identical points would otherwise hide the
weight). The roof is min(R * C, bandwidth * x): the array's peak and the DRAM slope
(absent when the bandwidth is unlimited). A format with fewer bytes per element moves
its points right. The title states the finding: the fastest format's cycles and stall
share against the others', and how many GEMMs are memory-bound in each.
1400 x 760 px, Agg backend, no global matplotlib state.
"""
from __future__ import annotations

import io

import numpy as np

FORMAT_COLORS = {"s2fp8": "#228833", "e5m2": "#66ccee", "e4m3": "#aa3377",
                 "bf16": "#4477aa", "fp16": "#ccbb44", "fp32": "#ee6677"}
WIDTH_IN, HEIGHT_IN, DPI = 14.0, 7.6, 100       # 1400 x 760 px
MAX_AREA = 600.0          # points^2 of the GEMM with the most cycles (the others by share)
MIN_AREA = 12.0


def finding(report) -> str:
    """One line: the fastest format, its cycles and stall share, the others as multiples."""
    totals = {name: r.total() for name, r in report.formats.items()}
    order = sorted(totals, key=lambda name: totals[name]["cycles"])
    best = order[0]

    def stalls(name):
        t = totals[name]
        return f"{t['stall_cycles'] / max(1, t['cycles']):.1%} stalls"
    line = (f"{best.upper()} operands: {totals[best]['cycles'] / 1e9:.3g} G cycles "
            f"({stalls(best)})")
    others = [f"{name.upper()} {totals[name]['cycles'] / max(1, totals[best]['cycles']):.2f}x "
              f"longer ({stalls(name)})" for name in order[1:]]
    return line + (", " + ", ".join(others) if others else "")


def roofline_png(report) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    acc = report.accelerator
    peak = acc.rows * acc.cols
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lows, highs, bound_counts = [], [], []
    largest = max(max(r.cycles) for r in report.formats.values())
    for name, result in report.formats.items():
        moved = np.array(result.dram_read, dtype=np.float64) + np.array(result.dram_write,
                                                                         dtype=np.float64)
        macs = np.array(result.macs, dtype=np.float64)
        cycles = np.array(result.cycles, dtype=np.float64)
        intensity = macs / np.maximum(moved, 1.0)
        achieved = macs / cycles
        lows.append(intensity.min())
        highs.append(intensity.max())
        bound = sum(result.bound(i, acc) == "memory" for i in range(len(result.gemms)))
        bound_counts.append(f"{name.upper()} {bound}")
        t = result.total()
        ax.scatter(intensity, achieved, s=np.maximum(MAX_AREA * cycles / largest, MIN_AREA),
                   alpha=0.55, color=FORMAT_COLORS.get(name, "#999999"), edgecolors="white",
                   linewidths=0.5,
                   label=f"{name}: {t['cycles']:,} cycles, {t['stall_cycles'] / t['cycles']:.1%} "
                         f"stalls, {(t['dram_read_bytes'] + t['dram_write_bytes']) / 1e9:,.1f} GB "
                         f"DRAM, {t['energy_pj'] / 1e9:,.0f} mJ")
    x = np.geomspace(min(lows) / 2, max(highs) * 2, 200)
    if acc.dram_bw is None:
        roof = np.full_like(x, peak)
    else:
        roof = np.minimum(peak, float(acc.dram_bw) * x)
        ridge = peak / float(acc.dram_bw)
        ax.axvline(ridge, color="grey", linewidth=0.8, linestyle=":")
        ax.annotate(f"ridge {ridge:g} MAC/B: memory-bound to the left", (ridge, peak),
                    xytext=(6, -16), textcoords="offset points", fontsize=11, color="dimgrey")
    ax.plot(x, roof, color="black", linewidth=1.4, label=f"roof: {peak} MAC/cycle, "
            + ("unlimited DRAM" if acc.dram_bw is None else f"{float(acc.dram_bw):g} B/cycle"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
    ax.set_ylim(bottom=min(ax.get_ylim()[0], peak / 2), top=peak * 1.6)
    low = ax.get_ylim()[0]
    ax.set_yticks([peak / 2 ** i for i in range(12) if peak / 2 ** i >= low])
    ax.set_xlabel("arithmetic intensity (MACs per DRAM byte)", fontsize=12)
    ax.set_ylabel("achieved MACs per cycle (stalls included)", fontsize=12)
    ax.tick_params(labelsize=11)
    ax.grid(which="major", alpha=0.3)
    legend = ax.legend(fontsize=11, loc="lower right", title="one point per GEMM, area "
                       "proportional to its cycles", title_fontsize=11)
    for handle in legend.legend_handles:
        if hasattr(handle, "set_sizes"):
            handle.set_sizes([60.0])
    n = len(next(iter(report.formats.values())).gemms)
    fig.suptitle(f"{report.source}: {finding(report)}", fontsize=14, fontweight="bold")
    ax.set_title(f"memory-bound GEMMs: {', '.join(bound_counts)} of {n}\n{acc.summary()}",
                 fontsize=11)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
