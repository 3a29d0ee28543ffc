"""Amaranth simulation of the binary32 datapath (hw.fp32) against the golden model.

Each stage is checked on its own against an exact Python computation, then FPMul
(W = 24 and reduced W), FPAdd and FPAddUnit bit for bit against ``pysim.numerics.golden`` on
TestFloat-style vectors of every family plus all specials pairs. The Python simulator is
slow, so vector counts are modest here; the 50k-vector sweep runs under Verilator.
"""
from __future__ import annotations

import gc
import re
import warnings
from contextlib import contextmanager
from fractions import Fraction

import numpy as np
import pytest
from amaranth import Shape
from amaranth.back import verilog
from amaranth.lib.wiring import In
from amaranth.sim import Simulator

from hw.fp32 import (Align, FPAdd, FPAddUnit, FPMul, LeadingZeroCount, Normalize, Round,
                     SigAddSub, SigMul, Unpack)
from hw.fp32.layouts import ALIGN_BITS, EXP_WIDTH, SIG_BITS, SUM_BITS
from pysim.numerics.formats import FP32, MANT_BITS_MAX
from pysim.numerics.golden import fp32_add, fp32_mul
from pysim.numerics.rounding import float64_to_fp32_bits
from pysim.numerics.testfloat import FAMILIES, SPECIAL_VALUES, fp32_pairs
from pysim.perf import arch

P = FP32.precision
N_PAIRS = 8000          # per op and unit; plus the 576 specials pairs in fp32_pairs
N_STAGE = 2000          # per stage test


# ---------------------------------------------------------------------------- helpers

def run_comb(dut, vectors, drive, sample):
    """Simulate a combinational component: ``drive(ctx, vector)`` then ``sample(ctx)``."""
    results = []

    async def testbench(ctx):
        for vector in vectors:
            drive(ctx, vector)
            results.append(sample(ctx))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    return results


def run_unit(dut, a_bits, b_bits) -> np.ndarray:
    """Stream operand pairs into a pipelined unit (one per cycle), collect valid results."""
    results = []
    count = len(a_bits)

    async def testbench(ctx):
        ctx.set(dut.valid_in, 0)
        await ctx.tick()                           # one idle cycle: valid_out stays low
        assert ctx.get(dut.valid_out) == 0
        for cycle in range(count + dut.latency):
            feeding = cycle < count
            if feeding:
                ctx.set(dut.a.as_value(), int(a_bits[cycle]))
                ctx.set(dut.b.as_value(), int(b_bits[cycle]))
            ctx.set(dut.valid_in, int(feeding))
            await ctx.tick()
            if ctx.get(dut.valid_out):
                # the result of the operands fed `latency` cycles ago
                assert cycle + 1 - dut.latency == len(results)
                results.append(ctx.get(dut.result.as_value()))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert len(results) == count
    return np.array(results, dtype=np.uint32)


def run_fpadd_comb(dut, a_bits, b_bits) -> np.ndarray:
    def drive(ctx, pair):
        ctx.set(dut.a.as_value(), int(pair[0]))
        ctx.set(dut.b.as_value(), int(pair[1]))

    got = run_comb(dut, zip(a_bits, b_bits), drive, lambda ctx: ctx.get(dut.result.as_value()))
    return np.array(got, dtype=np.uint32)


def assert_bits_equal(got, expected, a_bits, b_bits, what, families=None):
    """Fail with a count and the first mismatches in hex."""
    got, expected = np.asarray(got, dtype=np.uint32), np.asarray(expected, dtype=np.uint32)
    bad = np.flatnonzero(got != expected)
    lines = []
    for i in bad[:8]:
        family = f" [{FAMILIES[families[i]]}]" if families is not None else ""
        lines.append(f"  a=0x{int(a_bits[i]):08X} b=0x{int(b_bits[i]):08X}: "
                     f"got 0x{int(got[i]):08X}, expected 0x{int(expected[i]):08X}{family}")
    assert bad.size == 0, f"{what}: {bad.size}/{got.size} mismatches\n" + "\n".join(lines)


def set_struct(ctx, view, fields: dict):
    """Drive the fields of a data.View from a (nested) dict."""
    for name, value in fields.items():
        if isinstance(value, dict):
            set_struct(ctx, getattr(view, name), value)
        else:
            ctx.set(getattr(view, name), int(value))


def ref_unpack(bits: int, normalize: bool) -> dict:
    """Python reference of Unpack: the Unpacked fields of an FP32 word."""
    sign = bits >> (FP32.width - 1)
    biased = (bits >> FP32.frac_bits) & FP32.exp_max_code
    frac = bits & FP32.frac_mask
    sig = frac | ((biased != 0) << FP32.frac_bits)
    exp = max(biased, 1) - FP32.bias
    if normalize:
        shift = P - sig.bit_length()
        sig, exp = sig << shift, exp - shift
    return {"sign": sign, "exp": exp, "sig": sig,
            "cls": {"zero": int(biased == 0 and frac == 0),
                    "subnormal": int(biased == 0 and frac != 0),
                    "inf": int(biased == FP32.exp_max_code and frac == 0),
                    "nan": int(biased == FP32.exp_max_code and frac != 0)}}


def significant_bits(bits: np.ndarray) -> np.ndarray:
    """Number of significant bits of each FP32 significand (trailing zeros removed)."""
    out = []
    for word in np.asarray(bits, dtype=np.uint32).tolist():
        biased = (word >> FP32.frac_bits) & FP32.exp_max_code
        sig = (word & FP32.frac_mask) | ((biased != 0) << FP32.frac_bits)
        if sig == 0 or biased == FP32.exp_max_code:
            out.append(0)
        else:
            out.append(sig.bit_length() - ((sig & -sig).bit_length() - 1))
    return np.array(out)


def stage_words(seed: int, n: int) -> np.ndarray:
    """FP32 words of every class: specials, then add and mul TestFloat operands."""
    a_mul, b_mul, _ = fp32_pairs("mul", n // 2, seed)
    a_add, b_add, _ = fp32_pairs("add", n // 2, seed + 1)
    words = np.concatenate([SPECIAL_VALUES, SPECIAL_VALUES | np.uint32(FP32.sign_mask),
                            a_mul, b_mul, a_add, b_add])
    rng = np.random.default_rng(seed)
    return rng.choice(words, n, replace=False)


# ---------------------------------------------------------------------------- stages

@pytest.mark.parametrize("width", [1, SIG_BITS, SUM_BITS, 2 * SIG_BITS])
def test_leading_zero_count(width):
    rng = np.random.default_rng(width)
    values = [0, (1 << width) - 1] + [
        int(rng.integers(0, 1 << 62)) >> (62 - width) >> int(rng.integers(0, width))
        for _ in range(300)]
    dut = LeadingZeroCount(width=width)
    got = run_comb(dut, values, lambda ctx, v: ctx.set(dut.value, v),
                   lambda ctx: ctx.get(dut.count))
    expected = [width - v.bit_length() for v in values]
    bad = [(hex(v), g, e) for v, g, e in zip(values, got, expected) if g != e]
    assert not bad, f"{len(bad)} LZC mismatches, first (value, got, expected): {bad[:5]}"


@pytest.mark.parametrize("normalize", [False, True])
def test_unpack(normalize):
    words = stage_words(11, N_STAGE).tolist()
    dut = Unpack(normalize=normalize)
    up = dut.unpacked

    def sample(ctx):
        return {"sign": ctx.get(up.sign), "exp": ctx.get(up.exp), "sig": ctx.get(up.sig),
                "cls": {name: ctx.get(getattr(up.cls, name))
                        for name in ("zero", "subnormal", "inf", "nan")}}

    got = run_comb(dut, words, lambda ctx, w: ctx.set(dut.operand.as_value(), w), sample)
    bad = []
    for word, fields in zip(words, got):
        expected = ref_unpack(word, normalize)
        if expected["cls"]["inf"] or expected["cls"]["nan"]:
            # only the class and sign of Inf/NaN are specified
            fields = {k: fields[k] for k in ("sign", "cls")}
            expected = {k: expected[k] for k in ("sign", "cls")}
        elif expected["cls"]["zero"]:
            fields, expected = dict(fields, exp=None), dict(expected, exp=None)
        if fields != expected:
            bad.append((hex(word), fields, expected))
    assert not bad, f"{len(bad)} Unpack mismatches, first: {bad[:3]}"
    # the unpacked fields represent the operand exactly
    for word in words[:200]:
        value = np.uint32(word).view(np.float32)
        ref = ref_unpack(word, normalize)
        if np.isfinite(value):
            assert Fraction(ref["sig"]) * Fraction(2) ** (ref["exp"] - (P - 1)) == abs(Fraction(float(value)))


@pytest.mark.parametrize("sig_bits", [MANT_BITS_MAX, 8])
def test_sig_mul_product_is_exact(sig_bits):
    """SigMul: the wide product equals the exact product of the (W-bit) operands."""
    rng = np.random.default_rng(sig_bits)
    x = rng.standard_normal((2, N_STAGE // 4)) * 2.0 ** rng.integers(-140, 120, (2, N_STAGE // 4))
    words = float64_to_fp32_bits(x, sig_bits)
    dut = SigMul(sig_bits=sig_bits)
    # the exponent extremes the internal exponent width must hold without wrapping: the
    # smallest subnormal squared (2**-298) and the largest normal squared (~2**256)
    extremes = [(0x00000001, 0x00000001), (0x00000001, 0x80000001), (0x7F7FFFFF, 0x7F7FFFFF),
                (0x00000001, 0x7F7FFFFF), (0x00800000, 0x00800000)]
    pairs = [(a, b) for a, b in extremes if max(significant_bits(np.array([a, b]))) <= sig_bits]
    pairs += list(zip(words[0].tolist(), words[1].tolist()))

    def drive(ctx, pair):
        set_struct(ctx, dut.a, ref_unpack(pair[0], True))
        set_struct(ctx, dut.b, ref_unpack(pair[1], True))

    def sample(ctx):
        p = dut.product
        return ctx.get(p.sign), ctx.get(p.exp), ctx.get(p.sig), ctx.get(p.sticky)

    got = run_comb(dut, pairs, drive, sample)
    for (wa, wb), (sign, exp, sig, sticky) in zip(pairs, got):
        fa = Fraction(float(np.uint32(wa).view(np.float32)))
        fb = Fraction(float(np.uint32(wb).view(np.float32)))
        value = Fraction(sig) * Fraction(2) ** (exp - (dut.width - 1))
        assert (sign, sticky) == (int(fa * fb < 0), 0), (hex(wa), hex(wb))
        assert value == abs(fa * fb), f"a=0x{wa:08X} b=0x{wb:08X}: product {value} != {abs(fa * fb)}"


def test_align_and_add_sub_are_exact_up_to_sticky():
    """Align + SigAddSub: the jammed sum differs from the exact sum by less than its LSB,
    is exact when nothing was shifted out, and an exact zero has the RNE sign."""
    a_bits, b_bits, _ = fp32_pairs("add", N_STAGE, 5)
    finite = np.isfinite(a_bits.view(np.float32)) & np.isfinite(b_bits.view(np.float32))
    pairs = list(zip(a_bits[finite].tolist(), b_bits[finite].tolist()))
    align, add_sub = Align(), SigAddSub()

    def drive(ctx, pair):
        set_struct(ctx, align.a, ref_unpack(pair[0], False))
        set_struct(ctx, align.b, ref_unpack(pair[1], False))

    # Align's outputs (data.Const of the Aligned layout) then drive SigAddSub.
    aligned_out = run_comb(align, pairs, drive, lambda ctx: ctx.get(align.aligned))

    def drive_sum(ctx, aligned):
        ctx.set(add_sub.aligned, aligned)

    sums = run_comb(add_sub, aligned_out, drive_sum,
                    lambda ctx: (ctx.get(add_sub.sum.sign), ctx.get(add_sub.sum.exp),
                                 ctx.get(add_sub.sum.sig)))
    for (wa, wb), aligned, (sign, exp, sig) in zip(pairs, aligned_out, sums):
        fa = Fraction(float(np.uint32(wa).view(np.float32)))
        fb = Fraction(float(np.uint32(wb).view(np.float32)))
        exact = fa + fb
        lsb = Fraction(2) ** (exp - (SUM_BITS - 1))
        value = Fraction(sig) * lsb * (-1 if sign else 1)
        assert aligned.big >= aligned.small, (hex(wa), hex(wb))
        assert abs(value - exact) < lsb, f"a=0x{wa:08X} b=0x{wb:08X}: {value} vs {exact}"
        ea = ref_unpack(wa, False)["exp"]
        eb = ref_unpack(wb, False)["exp"]
        if abs(ea - eb) <= 2:                      # nothing shifted below the sticky bit
            assert value == exact, f"a=0x{wa:08X} b=0x{wb:08X}: {value} vs {exact}"
        if exact == 0:
            both_negative = (wa >> 31) & (wb >> 31)
            assert sign == both_negative, f"a=0x{wa:08X} b=0x{wb:08X}: zero sign {sign}"


def ref_normalize(sig: int, exp: int, sticky: int, width: int) -> dict:
    """Exact Python reference of Normalize (integer arithmetic on the exact value)."""
    msb_exp = exp - (width - sig.bit_length()) if sig else exp - width
    out_exp = max(FP32.emin, msb_exp)
    # value = sig * 2**(exp - (width - 1)); express it on the grid 2**(out_exp - (P - 1) - 1)
    shift = (exp - (width - 1)) - (out_exp - (P - 1) - 1)
    if shift >= 0:
        scaled, lost = sig << shift, 0
    else:
        scaled, lost = sig >> -shift, int(sig & ((1 << -shift) - 1) != 0)
    return {"sig": scaled >> 1, "round": scaled & 1, "sticky": int(lost or sticky),
            "exp": out_exp}


@pytest.mark.parametrize("width", [SIG_BITS + 2, SUM_BITS, 2 * SIG_BITS])
def test_normalize(width):
    rng = np.random.default_rng(width)
    vectors = []
    for _ in range(N_STAGE // 2):
        leading = int(rng.integers(0, width + 1))     # leading zeros, width = zero
        sig = 0 if leading == width else (
            (1 << (width - 1 - leading)) | int(rng.integers(0, 1 << 62)) % (1 << (width - 1 - leading)))
        exp = int(rng.integers(FP32.emin - 2 * P - 20, FP32.emax + 3))
        if rng.integers(0, 3) == 0:                   # concentrate around emin
            exp = FP32.emin + int(rng.integers(-width - 2, width + 2))
        vectors.append((sig, exp, int(rng.integers(0, 2))))
    dut = Normalize(width=width)

    def drive(ctx, vector):
        sig, exp, sticky = vector
        set_struct(ctx, dut.wide, {"sig": sig, "exp": exp, "sticky": sticky, "sign": 0,
                                   "special": {"nan": 0, "inf": 0}})

    def sample(ctx):
        pr = dut.pre_round
        return {"sig": ctx.get(pr.sig), "round": ctx.get(pr.round),
                "sticky": ctx.get(pr.sticky), "exp": ctx.get(pr.exp)}

    got = run_comb(dut, vectors, drive, sample)
    bad = [(tuple(map(hex, v)), g, ref_normalize(*v, width))
           for v, g in zip(vectors, got) if g != ref_normalize(*v, width)]
    assert not bad, f"{len(bad)} Normalize mismatches, first: {bad[:3]}"


def test_round():
    """Round: random pre-round values vs the exact value rounded by numpy (float64 ->
    float32 is a single correct RNE rounding; sticky stands for a quarter ulp)."""
    rng = np.random.default_rng(7)
    vectors = []
    for i in range(N_STAGE):
        exp = int(rng.integers(FP32.emin, FP32.emax + 2))
        if i % 4 == 0:
            exp = FP32.emin                                   # subnormal / tiny
        sig = int(rng.integers(0, 1 << P))
        if i % 5 == 0:
            sig = (1 << P) - 1 - int(rng.integers(0, 2))      # carry out of the significand
        if exp != FP32.emin:
            sig |= 1 << (P - 1)                               # Normalize invariant
        special = {"nan": int(i % 37 == 0), "inf": int(i % 41 == 0)}
        vectors.append({"sig": sig, "exp": exp, "round": int(rng.integers(0, 2)),
                        "sticky": int(rng.integers(0, 2)), "sign": int(rng.integers(0, 2)),
                        "special": special})
    dut = Round()
    got = run_comb(dut, vectors, lambda ctx, v: set_struct(ctx, dut.pre_round, v),
                   lambda ctx: ctx.get(dut.result.as_value()))

    value = np.array([(4 * v["sig"] + 2 * v["round"] + v["sticky"]) * 2.0 ** (v["exp"] - (P - 1) - 2)
                      for v in vectors])
    with np.errstate(over="ignore"):
        expected = value.astype(np.float32).view(np.uint32)
    sign = np.array([v["sign"] for v in vectors], dtype=np.uint32) << np.uint32(FP32.width - 1)
    inf = np.array([v["special"]["inf"] for v in vectors], dtype=bool)
    nan = np.array([v["special"]["nan"] for v in vectors], dtype=bool)
    expected = np.where(inf, np.uint32(FP32.inf_bits), expected) | sign
    expected = np.where(nan, np.uint32(FP32.canonical_nan_bits), expected)
    bad = np.flatnonzero(np.array(got, dtype=np.uint32) != expected)
    first = [(vectors[i], hex(got[i]), hex(int(expected[i]))) for i in bad[:3]]
    assert bad.size == 0, f"{bad.size} Round mismatches, first: {first}"


# ---------------------------------------------------------------------------- FPMul

@pytest.mark.parametrize("stages", arch.MUL_STAGES)
def test_fpmul_full_precision_matches_golden(stages):
    """Every pipeline depth: the same bits, ``stages`` cycles late (run_unit checks the
    latency cycle by cycle)."""
    a_bits, b_bits, families = fp32_pairs("mul", N_PAIRS if stages == 2 else N_PAIRS // 4,
                                          2024 + stages)
    dut = FPMul(stages=stages)
    assert dut.sig_bits == MANT_BITS_MAX and dut.latency == stages
    got = run_unit(dut, a_bits, b_bits)
    assert_bits_equal(got, fp32_mul(a_bits, b_bits), a_bits, b_bits,
                      f"FPMul(sig_bits=24, stages={stages})", families)
    assert set(np.unique(families)) == set(range(len(FAMILIES)))


def reduced_operands(sig_bits: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Operand pairs with at most ``sig_bits`` significant bits, over every binade (products
    that overflow, underflow, land on subnormals), plus the specials that qualify."""
    rng = np.random.default_rng(seed)
    mag = (1.0 + rng.random((2, n))) * 2.0 ** rng.integers(-149, 128, (2, n))
    # a third of the pairs: exponent sums around the subnormal range and around overflow
    third = n // 3
    ea = rng.integers(-100, 100, third)
    target = np.where(rng.integers(0, 2, third) == 0, rng.integers(-155, -120, third),
                      rng.integers(120, 130, third))
    mag[0, :third] = (1.0 + rng.random(third)) * 2.0 ** ea
    mag[1, :third] = (1.0 + rng.random(third)) * 2.0 ** (target - ea)
    sign = np.where(rng.integers(0, 2, (2, n)) == 0, 1.0, -1.0)
    words = float64_to_fp32_bits(sign * mag, sig_bits)
    specials = np.concatenate([SPECIAL_VALUES, SPECIAL_VALUES | np.uint32(FP32.sign_mask)])
    specials = specials[significant_bits(specials) <= sig_bits]
    spec_a, spec_b = np.meshgrid(specials, specials, indexing="ij")
    a = np.concatenate([spec_a.ravel(), words[0]])
    b = np.concatenate([spec_b.ravel(), words[1]])
    assert (significant_bits(a) <= sig_bits).all() and (significant_bits(b) <= sig_bits).all()
    return a, b


@pytest.mark.parametrize("sig_bits,count", [(8, 3000), (1, 500), (12, 1000), (13, 1000)])
def test_fpmul_reduced_precision_matches_golden(sig_bits, count):
    a_bits, b_bits = reduced_operands(sig_bits, count, sig_bits)
    dut = FPMul(sig_bits=sig_bits)
    assert dut.sig_bits == sig_bits
    got = run_unit(dut, a_bits, b_bits)
    assert_bits_equal(got, fp32_mul(a_bits, b_bits), a_bits, b_bits,
                      f"FPMul(sig_bits={sig_bits})")


# ---------------------------------------------------------------------------- FPAdd

def test_fpadd_combinational_matches_golden():
    a_bits, b_bits, families = fp32_pairs("add", N_PAIRS // 2, 77)
    dut = FPAdd()
    assert dut.latency == 0                     # combinational: in the accumulator loop
    assert_bits_equal(run_fpadd_comb(dut, a_bits, b_bits), fp32_add(a_bits, b_bits),
                      a_bits, b_bits, "FPAdd", families)


@pytest.mark.parametrize("stages", arch.ACC_STAGES)
def test_fpadd_unit_matches_golden(stages):
    a_bits, b_bits, families = fp32_pairs("add", N_PAIRS if stages == 1 else N_PAIRS // 4,
                                          2025 + stages)
    dut = FPAddUnit(stages=stages)
    assert dut.latency == stages
    got = run_unit(dut, a_bits, b_bits)        # results exactly dut.latency cycles late
    assert_bits_equal(got, fp32_add(a_bits, b_bits), a_bits, b_bits,
                      f"FPAddUnit(stages={stages})", families)


def test_fpadd_signed_zeros():
    pz, nz = 0x00000000, FP32.sign_mask
    one, minus_one = 0x3F800000, 0xBF800000
    a = np.array([pz, pz, nz, nz, one, minus_one, 0x00000001], dtype=np.uint32)
    b = np.array([pz, nz, pz, nz, minus_one, one, 0x80000001], dtype=np.uint32)
    expected = np.array([pz, pz, pz, nz, pz, pz, pz], dtype=np.uint32)
    assert_bits_equal(run_fpadd_comb(FPAdd(), a, b), expected, a, b, "FPAdd signed zeros")


# ---------------------------------------------------------------------------- parameters

@contextmanager
def never_elaborated():
    """Components built only to check their constructors are never elaborated: collect
    them here, with amaranth's UnusedElaboratable warning silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*created but never used")
        yield
        gc.collect()


@pytest.mark.parametrize("bad,error", [(0, ValueError), (25, ValueError), (-1, ValueError),
                                       (8.0, TypeError), (True, TypeError), ("8", TypeError)])
def test_fpmul_rejects_bad_sig_bits(bad, error):
    with never_elaborated():
        with pytest.raises(error, match="mant_bits must be"):
            FPMul(sig_bits=bad)
        with pytest.raises(error, match="mant_bits must be"):
            SigMul(sig_bits=bad)


def test_constructor_parameters_are_keyword_only_and_read_only():
    with never_elaborated():
        with pytest.raises(TypeError):
            FPMul(8)                                     # keyword-only
        dut = FPMul(sig_bits=8)
        with pytest.raises(AttributeError):
            dut.sig_bits = 12
        with pytest.raises(AttributeError):
            dut.latency = 3
        del dut
        with pytest.raises(ValueError, match=f"Normalize: width must be >= {SIG_BITS + 2}"):
            Normalize(width=SIG_BITS + 1)
        with pytest.raises(TypeError, match="Normalize: width must be an int"):
            Normalize(width=30.0)
        with pytest.raises(ValueError, match="LeadingZeroCount: width must be >= 1"):
            LeadingZeroCount(width=0)
        with pytest.raises(TypeError, match="Unpack: normalize must be a bool"):
            Unpack(normalize=1)
        with pytest.raises(ValueError, match="FPMul: stages must be 2..6, not 1"):
            FPMul(stages=1)
        with pytest.raises(ValueError, match="FPAdd: stages must be 0..5, not 6"):
            FPAdd(stages=6)
        with pytest.raises(TypeError, match="FPAddUnit: stages must be an int 1..6"):
            FPAddUnit(stages=2.0)
        with pytest.raises(AttributeError):
            FPAdd(stages=1).stages = 2
        assert Normalize(width=SUM_BITS).width == SUM_BITS
        assert Unpack(normalize=True).normalize is True


# ---------------------------------------------------------------------------- Verilog

@pytest.mark.parametrize("make,name", [(lambda: FPMul(), "fp32_mul_w24"),
                                       (lambda: FPMul(sig_bits=8), "fp32_mul_w8"),
                                       (lambda: FPAddUnit(), "fp32_add_unit")])
def test_verilog_ports_match_the_signature(make, name):
    """The generated module has exactly the component's ports, with their widths and
    directions, plus clk and rst (what the cocotb benches drive by name)."""
    dut = make()
    text = verilog.convert(dut, name=name)
    module = re.search(rf"^module {name}\((.*?)\);(.*?)^endmodule", text, re.S | re.M)
    assert module, f"no module {name} in the Verilog"
    declared = {match.group(3): (match.group(1), int(match.group(2) or 0) + 1)
                for match in re.finditer(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);",
                                         module.group(2), re.M)}
    assert sorted(module.group(1).replace(" ", "").split(",")) == sorted(declared)
    expected = {"clk": ("input", 1), "rst": ("input", 1)}
    for path, member, _ in dut.signature.flatten(dut):
        expected["__".join(map(str, path))] = ("input" if member.flow == In else "output",
                                              Shape.cast(member.shape).width)
    assert declared == expected
