"""Roofline PNG of a memory report: every GEMM a point per operand format.

x: arithmetic intensity, MACs per DRAM byte (reads + writes, metadata included);
y: achieved MACs per cycle (MACs / modelled cycles, stalls included). The roof is
min(R * C, bandwidth * x): the array's peak and the DRAM slope (absent when the
bandwidth is unlimited). A format with fewer bytes per element moves its points right.
Agg backend, no global matplotlib state.
"""
from __future__ import annotations

import io

import numpy as np

FORMAT_COLORS = {"s2fp8": "#228833", "e5m2": "#66ccee", "e4m3": "#aa3377",
                 "bf16": "#4477aa", "fp16": "#ccbb44", "fp32": "#ee6677"}


def roofline_png(report) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    acc = report.accelerator
    peak = acc.rows * acc.cols
    fig = Figure(figsize=(8, 6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lows, highs = [], []
    for name, result in report.formats.items():
        moved = np.array(result.dram_read, dtype=np.float64) + np.array(result.dram_write,
                                                                         dtype=np.float64)
        macs = np.array(result.macs, dtype=np.float64)
        intensity = macs / np.maximum(moved, 1.0)
        achieved = macs / np.array(result.cycles, dtype=np.float64)
        lows.append(intensity.min())
        highs.append(intensity.max())
        t = result.total()
        ax.scatter(intensity, achieved, s=14, alpha=0.7, color=FORMAT_COLORS.get(name, "#999999"),
                   label=f"{name}: {t['cycles']:,} cycles, {t['stall_cycles'] / t['cycles']:.0%} "
                         f"stalls")
    x = np.geomspace(min(lows) / 2, max(highs) * 2, 200)
    if acc.dram_bw is None:
        roof = np.full_like(x, peak)
    else:
        roof = np.minimum(peak, float(acc.dram_bw) * x)
        ax.axvline(peak / float(acc.dram_bw), color="grey", linewidth=0.6, linestyle=":")
    ax.plot(x, roof, color="black", linewidth=1.2, label=f"roof: {peak} MAC/cycle, "
            + ("unlimited DRAM" if acc.dram_bw is None else f"{float(acc.dram_bw):g} B/cycle"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (MACs per DRAM byte)")
    ax.set_ylabel("achieved MACs per cycle (stalls included)")
    ax.set_ylim(top=peak * 2)
    ax.grid(which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{report.source}: {acc.rows}x{acc.cols} array, buffers "
                 f"{_kib(acc.a_bytes)} + {_kib(acc.b_bytes)} KiB", fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _kib(value) -> str:
    return "inf" if value is None else f"{value / 1024:g}"
