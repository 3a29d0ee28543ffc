"""Host side of the output-path regression: tensors, golden expectation, comparison.

Check (registered in ``hw.tb.registry``):
- ``outpath_random_c4``: random float32 tensors (normal, Laplace gradients, log-wide,
  near-constant, subnormal-heavy, with zeros, all zeros, constant, a single value, and
  tensors holding Inf/NaN) of 1..400 values, through both passes of ``s2fp8_outpath_c4``
  (``hw.tb.bench_outpath``): statistics bit-exact with ``pysim.numerics.outpath.statistics``
  and 6 cycles after each tensor's last beat, alpha/beta from the scalar step equal, codes
  equal to ``encode_codes`` through the golden threshold table, 7 cycles after each beat.
  Tensors with Inf/NaN: the statistics must report them (``nonfinite``), which is what
  makes the controller refuse the tensor; their codes are still compared.
A user's tensor file (array ``x``, float32 [S, L]) runs through :func:`run_tensor_file`,
the host side of ``s2fp8 regress --tensors FILE.npz [-o OUT.npz]`` (pysim/cli/regress.py).
"""
from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np

from pysim.files import atomic_write
from pysim.numerics import outpath

from .runner import Check, add_build_notes, run_bench
from .scoreboard import MAX_RECORDED, Report

LANES = 4
TOP = f"s2fp8_outpath_c{LANES}"
STATS_FIELDS = ("count", "total", "max_magnitude", "min_magnitude", "max_log2", "nonfinite")


def _layout():
    from hw.outpath.layouts import stats_result_layout   # amaranth: only when a check runs
    return stats_result_layout(outpath.DEFAULT_LOG2)


def decode_stats(word: int) -> outpath.HwStats:
    """An ``OutputPath.stats_result.payload`` word as HwStats (signed fields sign-extended)."""
    from amaranth.hdl import Shape
    layout, fields = _layout(), {}
    for name in STATS_FIELDS:
        field = layout[name]
        shape = Shape.cast(field.shape)
        width = shape.width
        value = (word >> field.offset) & ((1 << width) - 1)
        if shape.signed and value >> (width - 1):
            value -= 1 << width
        fields[name] = value
    return outpath.HwStats(**fields)


def expected_output(tensor_bits: np.ndarray):
    """(HwStats, alpha, beta, codes) of one tensor by the golden rule (codes also for
    tensors with Inf/NaN, which encode_hw itself refuses)."""
    stats = outpath.statistics(tensor_bits)
    alpha, beta = outpath.scalar_step(stats)
    return stats, alpha, beta, outpath.encode_codes(tensor_bits, outpath.threshold_table(alpha, beta))


def random_tensors(count: int, rng: np.random.Generator, max_size: int = 400) -> list[np.ndarray]:
    """``count`` float32 tensors as uint32 bits, cycling through the kinds of the docstring."""
    def near_constant(n):
        return rng.choice([-1, 1]) * 3.0 * (1 + 10.0 ** rng.uniform(-4, -1) * rng.standard_normal(n))

    kinds = [
        lambda n: rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 4),
        lambda n: rng.laplace(0, 10.0 ** rng.uniform(-8, 0), n),
        lambda n: np.exp2(np.clip(rng.standard_normal(n) * 30, -149, 127)) * rng.choice([-1, 1], n),
        near_constant,
        lambda n: np.where(rng.random(n) < 0.7, rng.standard_normal(n) * 2.0 ** -138,
                           rng.standard_normal(n) * 2.0 ** -100),
        lambda n: np.where(rng.random(n) < 0.8, 0.0, rng.standard_normal(n)),
        lambda n: np.zeros(n) * rng.choice([-1, 1], n),
        lambda n: np.full(n, rng.choice([-1, 1]) * 2.0 ** rng.integers(-149, 128)),
        lambda n: rng.standard_normal(1),
        lambda n: np.where(rng.random(n) < 0.02, rng.choice([np.inf, -np.inf, np.nan], n),
                           rng.standard_normal(n)),
    ]
    tensors = []
    for index in range(count):
        size = int(rng.integers(1, max_size + 1))
        with np.errstate(over="ignore"):
            values = np.asarray(kinds[index % len(kinds)](size), np.float32)
        tensors.append(values.view(np.uint32))
    return tensors


def _describe_code(tensor: int, position: int, bits: int, expected: int, got: int) -> str:
    value = np.array([bits], np.uint32).view(np.float32)[0]
    return (f"tensor {tensor}, value {position}: {bits:#010x} ({value:.9g}) expected code "
            f"{expected:#04x}, got {got:#04x}")


def run_tensors(name: str, tensors: list[np.ndarray], *, seed: int, idle_prob: float = 0.2,
                outputs: dict | None = None, build_root=None) -> Report:
    """Both passes of every tensor through the RTL, compared with the golden rule.
    ``outputs`` (optional dict) receives what the RTL produced: ``codes`` (a uint8 array
    per tensor), ``alpha``, ``beta`` (float32 per tensor)."""
    start = time.monotonic()
    padded, first, last = [], [], []
    for t in tensors:
        beats = np.concatenate([t, np.zeros(-t.size % LANES, np.uint32)]).reshape(-1, LANES)
        padded.append(beats)
        first.append(np.arange(beats.shape[0]) == 0)
        last.append(np.arange(beats.shape[0]) == beats.shape[0] - 1)
    vectors = {"values": np.concatenate(padded), "first": np.concatenate(first).astype(np.uint8),
               "last": np.concatenate(last).astype(np.uint8)}
    result, built = run_bench(TOP, "hw.tb.bench_outpath", vectors, seed=seed,
                              params={"lanes": LANES, "idle_prob": idle_prob},
                              build_root=build_root)
    got = result.results
    report = Report(name, vectors=int(sum(t.size for t in tensors)),
                    seconds=time.monotonic() - start)
    from hw.outpath import StatisticsUnit, ThresholdEncoder
    stats_words = [int(w) for w in got["stats"]]
    if len(stats_words) != len(tensors):
        report.errors.append(f"{len(stats_words)} statistics results for {len(tensors)} tensors")
    lag = got["stats_out_cycle"][:len(tensors)] - got["stats_in_cycle"][:len(stats_words)]
    if np.any(lag != StatisticsUnit.latency):
        report.errors.append(f"statistics latency {sorted(set(lag.tolist()))}, expected "
                             f"{StatisticsUnit.latency}")
    if np.any(got["encode_lag"] != ThresholdEncoder.latency):
        report.errors.append(f"encoder latency {sorted(set(got['encode_lag'].tolist()))}, "
                             f"expected {ThresholdEncoder.latency}")
    codes = got["codes"].reshape(-1, LANES)
    if outputs is not None:
        outputs.update(codes=[], alpha=got["alpha"], beta=got["beta"])
    row = 0
    for index, (t, beats) in enumerate(zip(tensors, padded)):
        stats, alpha, beta, expected = expected_output(t)
        tensor_codes = codes[row:row + beats.shape[0]].reshape(-1)[:t.size]
        row += beats.shape[0]
        if outputs is not None:
            outputs["codes"].append(tensor_codes)
        problems = []
        if index < len(stats_words):
            rtl_stats = decode_stats(stats_words[index])
            for field in STATS_FIELDS:
                if getattr(rtl_stats, field) != getattr(stats, field):
                    problems.append(f"tensor {index} ({t.size} values): {field} expected "
                                    f"{getattr(stats, field)}, got {getattr(rtl_stats, field)}")
        if index < got["alpha"].size and (got["alpha"][index], got["beta"][index]) != (alpha, beta):
            problems.append(f"tensor {index}: alpha/beta expected {alpha!r}/{beta!r}, got "
                            f"{got['alpha'][index]!r}/{got['beta'][index]!r}")
        bad = np.flatnonzero(tensor_codes != expected[:tensor_codes.size])
        if tensor_codes.size != t.size:
            problems.append(f"tensor {index}: {tensor_codes.size} codes for {t.size} values")
        elif bad.size:
            p = int(bad[0])
            problems.append(_describe_code(index, p, int(t[p]), int(expected[p]),
                                           int(tensor_codes[p])) + f" ({bad.size} codes differ)")
        if problems:
            report.mismatches += 1
            report.errors.extend(problems[:max(0, MAX_RECORDED - len(report.errors))])
    report.notes.append(f"{len(tensors)} tensors, {report.vectors:,} values, {LANES} lanes")
    return add_build_notes(report, built, result)


def run_random(n: int, seed: int, *, build_root=None) -> Report:
    """``n`` random tensors (see :func:`random_tensors`) through both passes."""
    rng = np.random.default_rng(seed)
    return run_tensors("outpath_random_c4", random_tensors(n, rng), seed=seed,
                       build_root=build_root)


# --- a user's tensor file (``s2fp8 regress --tensors``) -----------------------------------

class TensorFileError(ValueError):
    """A malformed ``--tensors`` file (the message names the file, array and problem)."""


def load_tensor_file(path) -> np.ndarray:
    """The float32 array ``x`` of shape (S, L) of a tensor file: S tensors of L values.
    Raises TensorFileError (one line) for a missing/unreadable file, a missing or extra
    array, another dtype or shape, or a NaN/Inf (which S2FP8 cannot encode)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise TensorFileError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise TensorFileError(f"{path}: not a readable .npz file ({error})") from None
    if not isinstance(arrays, dict) or "x" not in arrays:
        raise TensorFileError(f"{path}: array 'x' is missing (expected float32[S, L]: S "
                              f"tensors of L values)")
    extra = sorted(set(arrays) - {"x"})
    if extra:
        raise TensorFileError(f"{path}: unexpected array '{extra[0]}' (expected only 'x')")
    x = arrays["x"]
    if x.dtype != np.float32:
        raise TensorFileError(f"{path}: array 'x' has dtype {x.dtype}, expected float32")
    if x.ndim != 2 or 0 in x.shape:
        raise TensorFileError(f"{path}: array 'x' has shape {list(x.shape)}, expected [S, L] "
                              f"with S, L >= 1")
    if x.shape[1] >= 1 << outpath.COUNT_BITS:
        raise TensorFileError(f"{path}: tensors of {x.shape[1]} values, the output path "
                              f"supports up to 2^{outpath.COUNT_BITS} - 1")
    bad = ~np.isfinite(x)
    if bad.any():
        s, i = (int(v) for v in np.argwhere(bad)[0])
        raise TensorFileError(f"{path}: x[{s}, {i}] is {float(x[s, i])!r}: NaN/Inf cannot be encoded "
                              f"({int(bad.sum())} non-finite value(s))")
    return x


def run_tensor_file(path, seed: int, *, out=None, build_root=None) -> Report:
    """A user's tensors through the RTL output path, compared with the golden rule; with
    ``out``, the RTL's ``codes`` (uint8[S, L]), ``alpha`` and ``beta`` (float32[S]) are
    written there (``pysim.files.atomic_write``: all or nothing, only after a complete
    run, the input file refused as output)."""
    x = load_tensor_file(path)
    outputs: dict = {}
    report = run_tensors(Path(path).name, [row.view(np.uint32) for row in x], seed=seed,
                         outputs=outputs, build_root=build_root)
    if out is not None:
        codes = np.zeros(x.shape, np.uint8)
        for index, tensor_codes in enumerate(outputs["codes"]):
            codes[index, :tensor_codes.size] = tensor_codes
        buffer = io.BytesIO()
        np.savez(buffer, codes=codes, alpha=outputs["alpha"].astype(np.float32),
                 beta=outputs["beta"].astype(np.float32))
        atomic_write(out, buffer.getvalue(), inputs=[path])
    return report


CHECKS = [Check("outpath_random_c4", {"quick": 60, "full": 1_000}, run_random)]
