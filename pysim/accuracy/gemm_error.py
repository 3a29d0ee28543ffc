"""GEMM accuracy of S2FP8 against plain FP8 on the real operands of a captured trace.

For every GEMM ``C = A @ B`` of a trace with tensors (docs/capture.md):

- reference: ``A @ B`` in float64 on the captured (float32) operands;
- ``fp32``: float32 ``A @ B`` (numpy/BLAS, FP32 accumulation): the floor of the FP32
  datapath;
- ``s2fp8``: A and B encoded with :func:`pysim.numerics.s2fp8.encode` (statistics over the whole
  captured tensor, all ``count`` GEMMs of a stack together), then
  :func:`pysim.numerics.golden.gemm`, the bit-exact model of the hardware (decode through the
  per-tensor table with ``mant_bits`` significant bits, FP32 multiply-accumulate in K
  order);
- ``e5m2``: plain FP8 E5M2 without any scaling (:mod:`pysim.numerics.fp8`: RNE, subnormals,
  saturating to +-57344), decoded to float32, then a float32 matmul;
- ``e4m3``: plain FP8 E4M3 (``ml_dtypes.float8_e4m3fn``: RNE, subnormals down to 2^-9,
  no Inf: a magnitude >= 464 becomes NaN, so one overflow poisons its output rows and
  columns), decoded to float32, then a float32 matmul.

The baselines use a float32 BLAS matmul (FP32 accumulation in another order than the
golden model): the difference is at the FP32 rounding level, far below FP8 errors.

Metrics per GEMM and format: ``err`` = ||C - C_ref||_F / ||C_ref||_F and ``max_err`` =
max|C - C_ref| / max|C_ref| (NaN if C holds NaN). Per format and operand pair,
``flush`` counts nonzero inputs that encode to zero and ``overflow`` inputs beyond the
format's largest finite value (57344 for E5M2: saturated; 448 for E4M3: NaN from 464;
for FP32 and S2FP8, whose decode is FP32, float64 inputs beyond FP32's range: Inf, and
counted, never a RuntimeWarning).

Large GEMMs: if ``count * M * K * N > max_macs``, the GEMM is sampled (seeded, reported
in the ``sampled`` column): first the GEMMs of a stack (the first ``ceil(count * r)``),
then a random subset of the rows of A and of the columns of B (each ``sqrt`` of the
remaining ratio); K is never sampled, and S2FP8 statistics are still those of the full
tensors, as the hardware computes them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pysim.errors import BadInput
from pysim.numerics.formats import E4M3, E5M2, FP32, MANT_BITS_MAX, S2FP8_BASE
from pysim.workload.trace import Trace, TraceError

#: the number formats an accuracy run compares, in table and plot order
COMPARED_FORMATS = ("s2fp8", "e5m2", "e4m3", "fp32")
LABELS = {"s2fp8": "S2FP8", "e5m2": "E5M2", "e4m3": "E4M3", "fp32": "FP32"}
DEFAULT_MAX_MACS = 100_000_000


@dataclass
class GemmAccuracy:
    layer: str
    phase: str
    m: int
    k: int
    n: int
    count: int
    alpha_a: float
    beta_a: float
    alpha_b: float
    beta_b: float
    err: dict = field(default_factory=dict)       # format -> relative Frobenius error
    max_err: dict = field(default_factory=dict)   # format -> max abs err / max |C_ref|
    flush: dict = field(default_factory=dict)     # format -> flushed inputs (A + B)
    overflow: dict = field(default_factory=dict)  # format -> overflowing inputs (A + B)
    sampled: str = ""                             # "" or e.g. "rows 100/2048"
    macs_run: int = 0


def _e4m3_roundtrip(x: np.ndarray) -> np.ndarray:
    import ml_dtypes
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(np.float32).astype(ml_dtypes.float8_e4m3fn).astype(np.float32)


def _e5m2_roundtrip(x: np.ndarray) -> np.ndarray:
    from pysim.numerics.fp8 import e5m2_decode, e5m2_encode
    return e5m2_decode(e5m2_encode(x))


def _counts(x: np.ndarray, q: np.ndarray, limit: float) -> tuple[int, int]:
    flush = int(np.count_nonzero((x != 0) & (q == 0)))
    overflow = int(np.count_nonzero(np.abs(x) > limit))
    return flush, overflow


def _stack(x: np.ndarray) -> np.ndarray:
    return x[None] if x.ndim == 2 else x


def _sample(count, m, k, n, max_macs, rng):
    """Instances, rows, columns to run (index arrays) and a description."""
    inst, rows, cols = np.arange(count), np.arange(m), np.arange(n)
    macs = count * m * k * n
    if max_macs is None or macs <= max_macs:
        return inst, rows, cols, ""
    notes = []
    ratio = max_macs / macs
    if count > 1:
        keep = max(1, math.ceil(count * ratio))
        inst = inst[:keep]
        ratio = max_macs / (keep * m * k * n)
        if keep < count:
            notes.append(f"GEMMs {keep}/{count}")
    if ratio < 1:
        side = math.sqrt(ratio)
        m_keep, n_keep = max(1, int(m * side)), max(1, int(n * side))
        if m_keep * n_keep * k * len(inst) > max_macs and m_keep > 1:
            m_keep = max(1, max_macs // (n_keep * k * len(inst)))
        rows = np.sort(rng.choice(m, m_keep, replace=False))
        cols = np.sort(rng.choice(n, n_keep, replace=False))
        if m_keep < m:
            notes.append(f"rows {m_keep}/{m}")
        if n_keep < n:
            notes.append(f"cols {n_keep}/{n}")
    return inst, rows, cols, ", ".join(notes)


def gemm_accuracy(a: np.ndarray, b: np.ndarray, layer: str = "gemm", phase: str = "forward",
                  mant_bits: int = MANT_BITS_MAX, max_macs: int | None = DEFAULT_MAX_MACS,
                  seed: int = 0) -> GemmAccuracy:
    """Errors of one GEMM, ``a`` (M, K) or (count, M, K), ``b`` (K, N) or (count, K, N)."""
    from pysim.numerics.golden import gemm
    from pysim.numerics.s2fp8 import S2FP8Tensor, encode

    a, b = _stack(np.asarray(a)), _stack(np.asarray(b))
    if a.shape[0] != b.shape[0]:  # one operand stacked, the other one GEMM's matrix
        a, b = a[:1], b[:1]
    count, m, k = a.shape
    n = b.shape[2]
    if b.shape[1] != k:
        raise BadInput(f"layer {layer!r} {phase}: A {a.shape} and B {b.shape} do not chain")
    ta, tb = encode(a), encode(b)
    q = {"e5m2": (_e5m2_roundtrip(a), _e5m2_roundtrip(b)),
         "e4m3": (_e4m3_roundtrip(a), _e4m3_roundtrip(b))}
    result = GemmAccuracy(layer, phase, m, k, n, count, float(ta.alpha), float(ta.beta),
                          float(tb.alpha), float(tb.beta))
    # S2FP8 flush: nonzero inputs whose code is +-0. Its codes never overflow (max ->
    # 2^15), but float64 inputs beyond FP32's range decode to Inf, as FP32 makes them.
    magnitude = S2FP8_BASE.magnitude_mask
    result.flush["s2fp8"] = int(np.count_nonzero((a != 0) & ((ta.codes & magnitude) == 0))
                                + np.count_nonzero((b != 0) & ((tb.codes & magnitude) == 0)))
    beyond_fp32 = int(np.count_nonzero(np.abs(a) > FP32.max_finite)
                      + np.count_nonzero(np.abs(b) > FP32.max_finite))
    result.overflow["s2fp8"] = result.overflow["fp32"] = beyond_fp32
    for fmt, limit in (("e5m2", E5M2.max_finite), ("e4m3", E4M3.max_finite)):
        fa, oa = _counts(a, q[fmt][0], limit)
        fb, ob = _counts(b, q[fmt][1], limit)
        result.flush[fmt], result.overflow[fmt] = fa + fb, oa + ob

    rng = np.random.default_rng(seed)
    inst, rows, cols, result.sampled = _sample(count, m, k, n, max_macs, rng)
    result.macs_run = len(inst) * len(rows) * k * len(cols)
    diff2 = {f: 0.0 for f in COMPARED_FORMATS}
    dmax = {f: 0.0 for f in COMPARED_FORMATS}
    ref2, refmax = 0.0, 0.0
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(all="ignore"):  # overflow to Inf is counted above, not a warning
        a32, b32 = a.astype(np.float32), b.astype(np.float32)
        for i in inst:
            ref = a64[i][rows] @ b64[i][:, cols]
            out = {
                "fp32": (a32[i][rows] @ b32[i][:, cols]).astype(np.float64),
                "s2fp8": gemm(S2FP8Tensor(ta.codes[i][rows], ta.alpha, ta.beta),
                              S2FP8Tensor(tb.codes[i][:, cols], tb.alpha, tb.beta),
                              mant_bits).astype(np.float64),
            }
            for fmt in ("e5m2", "e4m3"):
                qa, qb = q[fmt]
                out[fmt] = (qa[i][rows] @ qb[i][:, cols]).astype(np.float64)
            ref2 += float(np.sum(ref * ref))
            refmax = max(refmax, float(np.max(np.abs(ref))) if ref.size else 0.0)
            for fmt, c in out.items():
                d = c - ref
                diff2[fmt] += float(np.sum(d * d))
                dmax[fmt] = max(dmax[fmt], float(np.max(np.abs(d))) if d.size else 0.0)
    for fmt in COMPARED_FORMATS:
        result.err[fmt] = _ratio(math.sqrt(diff2[fmt]) if diff2[fmt] == diff2[fmt]
                                 else math.nan, math.sqrt(ref2))
        result.max_err[fmt] = _ratio(dmax[fmt], refmax)
    return result


def _ratio(num: float, den: float) -> float:
    if math.isnan(num):
        return math.nan
    if den == 0:
        return 0.0 if num == 0 else math.inf
    return num / den


def trace_accuracy(trace: Trace, mant_bits: int = MANT_BITS_MAX,
                   max_macs: int | None = DEFAULT_MAX_MACS, skip_missing: bool = False, progress=None) -> tuple[list[GemmAccuracy], list]:
    """Accuracy of every GEMM with tensors. A GEMM without tensors is an error (a
    :class:`TraceError` naming the layer) unless ``skip_missing``; returns (rows,
    skipped (layer, phase) list)."""
    jobs, skipped = [], []
    for index, entry in enumerate(trace.layers):
        for g in entry.gemms():
            if g.phase in entry.tensors and {"a", "b"} <= set(entry.tensors[g.phase]):
                jobs.append((entry.name, g))
            elif skip_missing:
                skipped.append((entry.name, g.phase))
            else:
                raise TraceError(
                    f"{trace.display}: layer {index} {entry.name!r}: phase {g.phase!r} has "
                    f"no captured tensors a and b (capture them with `s2fp8 trace capture "
                    f"MODEL --tensors`, or pass --skip-missing)")
    if not jobs:
        raise TraceError(f"{trace.display}: no GEMM has captured tensors (layer 0 "
                         f"{trace.layers[0].name!r} has none): capture with `s2fp8 trace "
                         f"capture MODEL --tensors`")
    rows = []
    for name, g in jobs:
        t = trace.tensors(name, g.phase)
        rows.append(gemm_accuracy(t["a"], t["b"], name, g.phase, mant_bits, max_macs))
        if progress is not None:
            progress(1)
    return rows, skipped


# ------------------------------------------------------------------------- reports

def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "NaN"
    if math.isinf(x):
        return "inf"
    return f"{x:.2e}"


def summarize(rows: list[GemmAccuracy]) -> dict:
    """Per format: median and max relative error over all GEMMs, over forward and over
    gradient (dgrad + wgrad) GEMMs; number of NaN GEMMs; total flush / overflow."""
    out = {}
    for fmt in COMPARED_FORMATS:
        def stats(sel):
            vals = np.array([r.err[fmt] for r in rows if sel(r)], dtype=np.float64)
            finite = vals[~np.isnan(vals)]
            med = float(np.median(finite)) if finite.size else math.nan
            mx = float(np.max(finite)) if finite.size else math.nan
            return med, mx
        med, mx = stats(lambda r: True)
        out[fmt] = {
            "median": med, "max": mx,
            "median_forward": stats(lambda r: r.phase == "forward")[0],
            "median_grad": stats(lambda r: r.phase != "forward")[0],
            "nan_gemms": sum(1 for r in rows if math.isnan(r.err[fmt])),
            "flush": sum(r.flush.get(fmt, 0) for r in rows),
            "overflow": sum(r.overflow.get(fmt, 0) for r in rows),
        }
    return out


COLUMNS = ["layer", "phase", "M", "K", "N", "count", "alphaA", "betaA", "alphaB", "betaB",
           "S2FP8", "E5M2", "E4M3", "FP32", "flush E5M2", "flush E4M3", "ovf E4M3", "sampled"]


def _row_cells(r: GemmAccuracy) -> list[str]:
    return [r.layer, r.phase, str(r.m), str(r.k), str(r.n), str(r.count),
            f"{r.alpha_a:.3g}", f"{r.beta_a:.3g}", f"{r.alpha_b:.3g}", f"{r.beta_b:.3g}",
            _fmt(r.err["s2fp8"]), _fmt(r.err["e5m2"]), _fmt(r.err["e4m3"]), _fmt(r.err["fp32"]),
            str(r.flush["e5m2"]), str(r.flush["e4m3"]), str(r.overflow["e4m3"]),
            r.sampled or "-"]


def format_table(rows: list[GemmAccuracy], title: str, quiet: bool = False) -> str:
    lines = [title]
    if not quiet:
        cells = [COLUMNS] + [_row_cells(r) for r in rows]
        widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
        left = {0, 1, len(COLUMNS) - 1}
        def line(c):
            return "  ".join(x.ljust(w) if i in left else x.rjust(w)
                             for i, (x, w) in enumerate(zip(c, widths))).rstrip()
        lines.append(line(COLUMNS))
        lines.append("-" * len(line(COLUMNS)))
        lines += [line(c) for c in cells[1:]]
        lines.append("")
    summary = summarize(rows)
    head = ["format", "median", "max", "median fwd", "median grad", "NaN GEMMs", "flushed",
            "overflow"]
    body = [[LABELS[f], _fmt(s["median"]), _fmt(s["max"]), _fmt(s["median_forward"]),
             _fmt(s["median_grad"]), str(s["nan_gemms"]), f"{s['flush']:,}",
             f"{s['overflow']:,}"] for f, s in summary.items()]
    widths = [max(len(c[i]) for c in [head] + body) for i in range(len(head))]
    lines.append("relative Frobenius error ||C - C_ref|| / ||C_ref|| per GEMM, "
                 f"{len(rows)} GEMMs:")
    for c in [head] + body:
        lines.append("  ".join(x.ljust(w) if i == 0 else x.rjust(w)
                               for i, (x, w) in enumerate(zip(c, widths))))
    beyond = summary["fp32"]["overflow"]
    if beyond:
        lines.append(f"{beyond:,} input(s) beyond the FP32 range (|x| > "
                     f"{FP32.max_finite:.4g}): Inf in FP32 and in S2FP8's FP32 decode")
    grads = [r for r in rows if r.phase != "forward"]
    if grads:
        wins = sum(1 for r in grads if r.err["s2fp8"] < r.err["e5m2"])
        lines.append(f"gradient GEMMs where S2FP8 beats plain E5M2: {wins}/{len(grads)}")
    return "\n".join(lines)


def to_csv(rows: list[GemmAccuracy]) -> str:
    import csv
    import io
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    head = ["layer", "phase", "M", "K", "N", "count", "alpha_a", "beta_a", "alpha_b",
            "beta_b"]
    for f in COMPARED_FORMATS:
        head += [f"{f}_err", f"{f}_max_err"]
    head += ["s2fp8_flush", "e5m2_flush", "e5m2_overflow", "e4m3_flush", "e4m3_overflow",
             "sampled", "macs_run"]
    writer.writerow(head)
    for r in rows:
        cells = [r.layer, r.phase, r.m, r.k, r.n, r.count, repr(r.alpha_a), repr(r.beta_a),
                 repr(r.alpha_b), repr(r.beta_b)]
        for f in COMPARED_FORMATS:
            cells += [repr(r.err[f]), repr(r.max_err[f])]
        cells += [r.flush["s2fp8"], r.flush["e5m2"], r.overflow["e5m2"], r.flush["e4m3"],
                  r.overflow["e4m3"], r.sampled, r.macs_run]
        writer.writerow(cells)
    return buffer.getvalue()


FORMAT_COLORS = {"s2fp8": "#228833", "e5m2": "#ee6677", "e4m3": "#ccbb44", "fp32": "#4477aa"}


def to_png(rows: list[GemmAccuracy], title: str) -> bytes:
    """Error per format as distributions, legible at any number of GEMMs (1400x650 px).

    Left: per phase, one box per format (relative Frobenius error, log axis; every GEMM
    also a dot while a box holds at most :data:`PLOT_DOTS_MAX`); GEMMs with a NaN error
    are counted above their box. Right: S2FP8 against plain E5M2, one dot per GEMM
    coloured by phase, log-log; below the diagonal S2FP8 is the more accurate. The title
    gives ``title``, then the finding: on how many forward and gradient GEMMs S2FP8 beats
    E5M2 and E4M3. (One group of bars per GEMM made the 144 GEMMs of a MiniLM step a
    6000x600 px chart with unreadable labels.) Agg backend, no global state."""
    import io
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=PLOT_SIZE_INCHES, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    box_ax, pair_ax = fig.subplots(1, 2, width_ratios=(1.6, 1.0))
    phases = [p for p in PLOT_PHASES if any(r.phase == p for r in rows)]
    phases += sorted({r.phase for r in rows} - set(phases))
    finite = [r.err[f] for r in rows for f in COMPARED_FORMATS
              if np.isfinite(r.err[f]) and r.err[f] > 0]
    floor = min(finite) / 3 if finite else 1e-12  # exact (0) errors are drawn here
    top = max(finite) * 30 if finite else 1.0
    _plot_error_boxes(box_ax, rows, phases, floor, top)
    _plot_s2fp8_vs_e5m2(pair_ax, rows, phases, floor)
    fig.suptitle(f"{title}\n{_accuracy_finding(rows)}", fontsize=12)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


#: The accuracy plot's size (inches at 100 dpi): 1400x650 px whatever the input.
PLOT_SIZE_INCHES = (14.0, 6.5)
#: phase order in the accuracy plot (others follow, sorted)
PLOT_PHASES = ("forward", "dgrad", "wgrad")
#: most GEMMs per box drawn as dots on top of the box
PLOT_DOTS_MAX = 400
_PHASE_COLORS = {"forward": "#4477aa", "dgrad": "#ee6677", "wgrad": "#228833"}


def _errors(rows, fmt: str) -> np.ndarray:
    return np.array([r.err[fmt] for r in rows], dtype=np.float64)


def _plot_error_boxes(ax, rows, phases: list, floor: float, top: float) -> None:
    rng = np.random.default_rng(0)  # dot jitter only: the same picture every run
    slot = len(COMPARED_FORMATS) + 1
    for p_index, phase in enumerate(phases):
        in_phase = [r for r in rows if r.phase == phase]
        for f_index, fmt in enumerate(COMPARED_FORMATS):
            x = p_index * slot + f_index
            errors = _errors(in_phase, fmt)
            nan = int(np.isnan(errors).sum())
            values = np.maximum(errors[~np.isnan(errors)], floor)
            color = FORMAT_COLORS[fmt]
            if values.size:
                ax.boxplot([values], positions=[x], widths=0.7, patch_artist=True,
                           showfliers=values.size > PLOT_DOTS_MAX,
                           boxprops={"facecolor": color, "alpha": 0.45, "edgecolor": color},
                           medianprops={"color": "black"}, whiskerprops={"color": color},
                           capprops={"color": color},
                           flierprops={"marker": ".", "markersize": 2,
                                       "markeredgecolor": color})
                if values.size <= PLOT_DOTS_MAX:
                    ax.plot(x + rng.uniform(-0.22, 0.22, values.size), values, ".",
                            color=color, markersize=4, alpha=0.8)
            if nan:
                ax.text(x, top / 30, f"{nan}\nNaN", ha="center", va="bottom", fontsize=7,
                        color=color)
        ax.text(p_index * slot + (len(COMPARED_FORMATS) - 1) / 2, top * 4,
                f"{phase}, {len(in_phase):,} GEMM{'' if len(in_phase) == 1 else 's'}",
                ha="center", va="top", fontsize=9)
    ax.set_yscale("log")
    ax.set_ylim(floor, top * 10)  # a decade above the data for the phase and NaN labels
    ax.set_xticks([p * slot + f for p in range(len(phases)) for f in range(len(COMPARED_FORMATS))])
    ax.set_xticklabels([LABELS[f] for _ in phases for f in COMPARED_FORMATS], rotation=90,
                       fontsize=8)
    ax.set_xlim(-0.8, len(phases) * slot - 1.2)
    ax.set_ylabel("relative Frobenius error ||C - C_ref|| / ||C_ref|| (log)")
    ax.grid(axis="y", which="major", alpha=0.3)
    ax.set_title("error per GEMM, by phase and format (box: quartiles, whiskers 1.5 IQR)",
                 fontsize=10)


def _plot_s2fp8_vs_e5m2(ax, rows, phases: list, floor: float) -> None:
    s2fp8, e5m2 = _errors(rows, "s2fp8"), _errors(rows, "e5m2")
    both = ~np.isnan(s2fp8) & ~np.isnan(e5m2)
    phase_of = np.array([r.phase for r in rows])
    for phase in phases:
        pick = both & (phase_of == phase)
        ax.plot(np.maximum(e5m2[pick], floor), np.maximum(s2fp8[pick], floor), ".",
                color=_PHASE_COLORS.get(phase, "#999999"),
                markersize=5 if len(rows) <= 1000 else 2, alpha=0.7 if len(rows) <= 1000 else 0.4,
                label=f"{phase} ({int(pick.sum()):,})")
    if both.any():
        low = max(floor, min(s2fp8[both].min(), e5m2[both].min()) / 2)
        high = max(s2fp8[both].max(), e5m2[both].max()) * 2
        ax.plot([low, high], [low, high], color="black", linewidth=0.8)
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.text(high / 1.3, low * 1.3, "S2FP8 more accurate", ha="right", va="bottom",
                fontsize=9)
    else:  # nothing to compare: an empty panel with positive limits for the log axes
        ax.set_xlim(floor, 1.0)
        ax.set_ylim(floor, 1.0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("plain E5M2 error")
    ax.set_ylabel("S2FP8 error")
    ax.grid(which="major", alpha=0.3)
    if both.any():
        ax.legend(loc="upper left", fontsize=8, title="phase (GEMMs)", title_fontsize=8)
    dropped = int((~both).sum())
    ax.set_title("S2FP8 vs plain E5M2, one dot per GEMM"
                 + (f" ({dropped} with a NaN error left out)" if dropped else ""), fontsize=10)


def _wins(rows, rival: str) -> int:
    """GEMMs where S2FP8's error is below ``rival``'s (a NaN error loses)."""
    return sum(1 for r in rows
               if not math.isnan(r.err["s2fp8"])
               and (math.isnan(r.err[rival]) or r.err["s2fp8"] < r.err[rival]))


def _accuracy_finding(rows) -> str:
    """One line: on how many forward / gradient GEMMs S2FP8 beats E5M2 and E4M3."""
    groups = [(name, [r for r in rows if (r.phase == "forward") == forward])
              for name, forward in (("forward", True), ("gradient", False))]
    groups = [(name, group) for name, group in groups if group]
    parts = []
    for rival in ("e5m2", "e4m3"):
        counts = " and ".join(f"{_wins(group, rival):,}/{len(group):,} {name}"
                              for name, group in groups)
        parts.append(f"{LABELS[rival]} on {counts} GEMMs")
    return "S2FP8 beats " + "; ".join(parts) if groups else "no GEMM"
