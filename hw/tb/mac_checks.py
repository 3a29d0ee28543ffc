"""Host side of the S2FP8 MAC regression: vectors, golden expectation, scoreboard.

Checks (registered in ``hw.tb.registry``):
- ``mac_exhaustive_w{24,8}``: all 256 x 256 code pairs as single products, for three
  tensor-statistics settings (``EXHAUSTIVE_SETTINGS``: a large alpha, a small alpha, a
  shift near the FP32 range limit); the accumulator starts at -0.0 so the result is the
  product itself, signed zeros included.
- ``mac_sequences_w{24,8}``: random accumulation sequences of length 1..256 with zeros,
  Inf and NaN codes, cancelling pairs, subnormal products and varied start values.
A user's own vector file runs through :func:`run_vector_file` (``s2fp8 regress --vectors``).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pysim.numerics import golden, s2fp8
from pysim.numerics.formats import E5M2, FP32, TABLE_ENTRIES
from pysim.numerics.rounding import fp32_from_bits
from pysim.perf import arch

from .runner import Check, add_build_notes, run_bench
from .scoreboard import MAX_RECORDED, Report, check_stream

#: (name, (alpha_a, beta_a), (alpha_b, beta_b)) of the exhaustive check's decode tables.
EXHAUSTIVE_SETTINGS = (
    ("large alpha", (16.0, 40.0), (9.5, -30.0)),
    ("small alpha", (0.125, 0.0), (0.2, 1.0)),
    ("shift near the range limit", (1.0, -112.0), (1.0, 134.0)),
)
#: Table settings the random sequences cycle through (the last makes subnormal products).
SEQUENCE_SETTINGS = (
    ((5.0, 21.0), (5.0, 21.0)),      # near the paper's ResNet-20 statistics
    ((1.5, 3.0), (0.7, -2.0)),
    ((16.0, 40.0), (0.25, 0.5)),
    ((1.0, 60.0), (1.0, 75.0)),      # products around 2^-135: subnormal results
)

_SPECIAL_MAGNITUDES = np.arange(E5M2.inf_bits, 1 << (E5M2.width - 1), dtype=np.uint8)


def _field(name: str) -> int:
    from hw.mac import OperandLayout
    return OperandLayout[name].offset


def pack_beats(codes_a, codes_b, lengths, init):
    """Per-beat ``operands.payload`` words and ``init`` values of S sequences, plus the
    index of each sequence's last beat."""
    steps = codes_a.shape[1]
    k = np.arange(steps)
    mask = k[None, :] < np.asarray(lengths)[:, None]
    first = (k[None, :] == 0) & mask
    last = (k[None, :] == np.asarray(lengths)[:, None] - 1)
    payload = ((codes_a.astype(np.uint32) << np.uint32(_field("a")))
               | (codes_b.astype(np.uint32) << np.uint32(_field("b")))
               | (first.astype(np.uint32) << np.uint32(_field("first")))
               | (last.astype(np.uint32) << np.uint32(_field("last"))))
    init_beats = np.broadcast_to(np.asarray(init, np.uint32)[:, None], codes_a.shape)
    last_index = np.cumsum(mask.sum(axis=1)) - 1
    return payload[mask], init_beats[mask], last_index


def _describe_value(bits) -> str:
    value = float(fp32_from_bits(np.array([bits], np.uint32))[0])
    return f"{int(bits):#010x} ({value:.9g})"


def describe_sequence(s, table_a, table_b, codes_a, codes_b, length, init, expected, got) -> str:
    """A failing sequence decoded: its beats (codes and decoded operands), init, expected
    and obtained sums, in hex and decimal."""
    a_bits = s2fp8.apply_sign(codes_a[s, :length], table_a)
    b_bits = s2fp8.apply_sign(codes_b[s, :length], table_b)
    lines = [f"sequence {s} ({length} products), init {_describe_value(init[s])}"]
    for k in range(min(length, 8)):
        lines.append(f"    k={k}: a code {int(codes_a[s, k]):#04x} = {_describe_value(a_bits[k])}, "
                     f"b code {int(codes_b[s, k]):#04x} = {_describe_value(b_bits[k])}")
    if length > 8:
        lines.append(f"    ... {length - 8} more products")
    lines.append(f"    expected {_describe_value(expected[s])}, got {_describe_value(got)}")
    return "\n".join(lines)


def run_mac(name: str, table_a, table_b, codes_a, codes_b, init, lengths, *, mant_bits: int,
            seed: int, idle_prob: float = 0.2, expected=None, build_root=None) -> Report:
    """Stream S sequences through the MAC RTL (W = ``mant_bits``) and score them against
    ``expected`` (default: ``pysim.numerics.golden.mac``)."""
    start = time.monotonic()
    lengths = np.asarray(lengths, np.int64)
    if expected is None:
        expected = golden.mac(table_a, table_b, codes_a, codes_b, init, lengths)
    payload, init_beats, last_index = pack_beats(codes_a, codes_b, lengths, init)
    result, built = run_bench(
        f"s2fp8_mac_w{mant_bits}", "hw.tb.bench_mac",
        {"table_a": table_a, "table_b": table_b, "payload": payload, "init": init_beats},
        seed=seed, params={"latency": arch.MAC_LATENCY, "idle_prob": idle_prob},
        build_root=build_root)
    got = result.results
    in_cycle = got["in_cycle"][last_index]
    report = check_stream(name, inputs={"init": init}, expected=expected,
                          out_cycle=got["out_cycle"], out_value=got["out_result"],
                          in_cycle=in_cycle, latency=arch.MAC_LATENCY,
                          seconds=time.monotonic() - start)
    report.vectors = int(lengths.sum())
    out = np.asarray(got["out_result"], np.uint64)
    n = min(out.size, expected.size)
    bad = np.flatnonzero(out[:n] != expected[:n])
    # replace the generic mismatch lines by decoded sequences
    report.errors = [e for e in report.errors if not e.startswith("#")]
    for s in bad[:MAX_RECORDED]:
        report.errors.append(describe_sequence(int(s), table_a, table_b, codes_a, codes_b,
                                               int(lengths[s]), init, expected, out[s]))
    report.notes.append(f"{lengths.size:,} sequences")
    return add_build_notes(report, built, result)


def run_exhaustive(n: int, seed: int, *, mant_bits: int, build_root=None) -> Report:
    """All 256 x 256 code pairs for the first ``n // 65536`` (at least 1) settings."""
    codes = np.arange(1 << E5M2.width, dtype=np.uint8)
    codes_a = np.repeat(codes, codes.size)[:, None]
    codes_b = np.tile(codes, codes.size)[:, None]
    lengths = np.ones(codes_a.shape[0], np.int64)
    init = np.full(codes_a.shape[0], FP32.sign_mask, np.uint32)  # -0 + p == p, sign kept
    settings = EXHAUSTIVE_SETTINGS[:max(1, min(len(EXHAUSTIVE_SETTINGS), n // codes_a.shape[0]))]
    total = Report(f"mac_exhaustive_w{mant_bits}")
    for index, (label, stats_a, stats_b) in enumerate(settings):
        table_a = s2fp8.decode_table(*stats_a, mant_bits)
        table_b = s2fp8.decode_table(*stats_b, mant_bits)
        report = run_mac(label, table_a, table_b, codes_a, codes_b, init, lengths,
                         mant_bits=mant_bits, seed=seed + index, idle_prob=0.05,
                         build_root=build_root)
        report.errors = [f"[{label}] {e}" for e in report.errors]
        total.merge(report)
    total.notes = [f"{len(settings)} statistics settings x 65,536 code pairs"] + \
        [note for note in total.notes if "sequences" not in note]
    return total


def random_sequences(count: int, rng: np.random.Generator, max_length: int = 256):
    """``count`` random sequences (codes_a, codes_b, lengths, init) with zeros, Inf/NaN
    codes, cancelling pairs and varied start values."""
    lengths = rng.integers(1, max_length + 1, count)
    steps = int(lengths.max())
    finite = np.concatenate([np.arange(0, E5M2.inf_bits), np.arange(0x80, 0x80 + E5M2.inf_bits)])
    codes_a = rng.choice(finite, (count, steps)).astype(np.uint8)
    codes_b = rng.choice(finite, (count, steps)).astype(np.uint8)
    codes_a[rng.random(codes_a.shape) < 0.1] = 0                      # zeros
    kind = rng.integers(0, 4, count)
    # kind 1: Inf/NaN codes sprinkled in
    special = (kind[:, None] == 1) & (rng.random(codes_a.shape) < 0.004)
    codes_b[special] = rng.choice(_SPECIAL_MAGNITUDES, int(special.sum())) \
        | (rng.integers(0, 2, int(special.sum())) << 7).astype(np.uint8)
    # kind 2: the second half repeats the first half with b negated (massive cancellation)
    half = steps // 2
    cancel = kind == 2
    codes_a[cancel, half:2 * half] = codes_a[cancel, :half]
    codes_b[cancel, half:2 * half] = codes_b[cancel, :half] ^ np.uint8(E5M2.sign_mask)
    lengths[cancel] = np.maximum(2 * (lengths[cancel] // 2), 2).clip(max=2 * half)
    # kind 3: each product followed by its negation (exact cancellation, signed zeros)
    alternate = kind == 3
    codes_a[alternate, 1::2] = codes_a[alternate, 0::2][:, :codes_a[:, 1::2].shape[1]]
    codes_b[alternate, 1::2] = (codes_b[alternate, 0::2][:, :codes_b[:, 1::2].shape[1]]
                                ^ np.uint8(E5M2.sign_mask))
    init_choices = np.array([0, FP32.sign_mask, 0x3F800000, 0xC2F60000, 0x00000003,
                             0x80400000, 0x7F7FFFFF], np.uint32)
    init = rng.choice(init_choices, count)
    return codes_a, codes_b, lengths, init


def run_sequences(n: int, seed: int, *, mant_bits: int, build_root=None) -> Report:
    """``n`` random sequences, spread over the ``SEQUENCE_SETTINGS`` decode tables."""
    rng = np.random.default_rng(seed)
    total = Report(f"mac_sequences_w{mant_bits}")
    parts = np.array_split(np.arange(n), len(SEQUENCE_SETTINGS))
    for index, ((stats_a, stats_b), part) in enumerate(zip(SEQUENCE_SETTINGS, parts)):
        if not part.size:
            continue
        codes_a, codes_b, lengths, init = random_sequences(part.size, rng)
        table_a = s2fp8.decode_table(*stats_a, mant_bits)
        table_b = s2fp8.decode_table(*stats_b, mant_bits)
        total.merge(run_mac(f"setting {index}", table_a, table_b, codes_a, codes_b, init,
                            lengths, mant_bits=mant_bits, seed=seed + index,
                            build_root=build_root))
    total.notes = [f"{n:,} sequences of 1..256 products"] + \
        [note for note in total.notes if "sequences" not in note]
    return total


# --- a user's vector file ----------------------------------------------------------------

#: array name -> (dtype, what it holds)
VECTOR_ARRAYS = {
    "table_a": (np.uint32, "uint32[128] FP32 bit patterns"),
    "table_b": (np.uint32, "uint32[128] FP32 bit patterns"),
    "codes_a": (np.uint8, "uint8[S, L] codes"),
    "codes_b": (np.uint8, "uint8[S, L] codes"),
    "init": (np.uint32, "uint32[S] FP32 bit patterns"),
    "expected": (np.uint32, "uint32[S] FP32 bit patterns"),
}


class VectorFileError(ValueError):
    """A malformed ``--vectors`` file (the message names the array and the problem)."""


def load_vector_file(path) -> dict:
    """Load and validate a MAC vector file; raises VectorFileError with a one-line message."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise VectorFileError(f"{path}: no such file") from None
    except (OSError, ValueError) as error:
        raise VectorFileError(f"{path}: not a readable .npz file ({error})") from None
    for name, (_, meaning) in VECTOR_ARRAYS.items():
        if name not in arrays:
            raise VectorFileError(f"{path}: array '{name}' is missing (expected {meaning})")
    for name, value in arrays.items():
        if name not in VECTOR_ARRAYS:
            raise VectorFileError(f"{path}: unexpected array '{name}' "
                                  f"(expected {', '.join(VECTOR_ARRAYS)})")
    for name, (dtype, meaning) in VECTOR_ARRAYS.items():
        if arrays[name].dtype != dtype:
            raise VectorFileError(f"{path}: array '{name}' has dtype {arrays[name].dtype}, "
                                  f"expected {meaning}")
    for name in ("table_a", "table_b"):
        if arrays[name].shape != (TABLE_ENTRIES,):
            raise VectorFileError(f"{path}: array '{name}' has shape {list(arrays[name].shape)}, "
                                  f"expected [{TABLE_ENTRIES}]")
    if arrays["codes_a"].ndim != 2 or 0 in arrays["codes_a"].shape:
        raise VectorFileError(f"{path}: array 'codes_a' has shape {list(arrays['codes_a'].shape)}, "
                              f"expected [S, L] with S, L >= 1")
    seqs = arrays["codes_a"].shape[0]
    if arrays["codes_b"].shape != arrays["codes_a"].shape:
        raise VectorFileError(f"{path}: array 'codes_b' has shape {list(arrays['codes_b'].shape)}, "
                              f"expected {list(arrays['codes_a'].shape)} like codes_a")
    for name in ("init", "expected"):
        if arrays[name].shape != (seqs,):
            raise VectorFileError(f"{path}: array '{name}' has shape {list(arrays[name].shape)}, "
                                  f"expected [{seqs}] (one per sequence of codes_a)")
    return arrays


def run_vector_file(path, seed: int, *, mant_bits: int = FP32.precision, build_root=None) -> Report:
    """Run a user's MAC vector file through the RTL and compare with its ``expected``."""
    arrays = load_vector_file(path)
    lengths = np.full(arrays["codes_a"].shape[0], arrays["codes_a"].shape[1], np.int64)
    report = run_mac(Path(path).name, arrays["table_a"], arrays["table_b"], arrays["codes_a"],
                     arrays["codes_b"], arrays["init"], lengths, mant_bits=mant_bits,
                     seed=seed, expected=arrays["expected"], build_root=build_root)
    return report


def _checks():
    checks = [Check(f"mac_exhaustive_w{w}", {"quick": 65_536, "full": 3 * 65_536},
                    lambda n, seed, w=w, **kw: run_exhaustive(n, seed, mant_bits=w, **kw))
              for w in (FP32.precision, 8)]
    checks.append(Check("mac_sequences_w24", {"quick": 400, "full": 10_000},
                        lambda n, seed, **kw: run_sequences(n, seed, mant_bits=24, **kw)))
    checks.append(Check("mac_sequences_w8", {"quick": 200, "full": 2_000},
                        lambda n, seed, **kw: run_sequences(n, seed, mant_bits=8, **kw)))
    return checks


CHECKS = _checks()
