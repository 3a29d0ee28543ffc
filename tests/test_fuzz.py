"""Property-based fuzzing (hypothesis) of the parsers and the S2FP8 numerics (issue 9).

Parsers (SCALE-Sim CSV, trace JSON, MAC vector files through ``s2fp8 regress``) must
either accept an input or reject it with :class:`pysim.errors.BadInput` (CLI exit 2):
never another exception. Numerics (stats/encode/decode on arbitrary float arrays): no
exception but the documented ValueError for NaN/Inf, codes a pure function of
``(x, alpha, beta)``, decode monotonic in the code.

Profiles: ``ci`` (the default: derandomized, so every run tries the same examples, and
modest example counts: about 30 s here) and ``release`` (10x the examples, random):
``HYPOTHESIS_PROFILE=release pytest tests/test_fuzz.py``.
"""
from __future__ import annotations

import io
import json
import os
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pysim.errors import BadInput
from pysim.numerics.formats import E5M2, TABLE_ENTRIES
from pysim.numerics.fp8 import E5M2_VALUES
from pysim.numerics.s2fp8 import decode_table, encode, encode_with, stats

# conftest.py belongs to the test infrastructure; the profiles are registered here.
_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.function_scoped_fixture])
settings.register_profile("ci", max_examples=150, derandomize=True, **_COMMON)
settings.register_profile("release", max_examples=1500, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _parses_or_bad_input(parse, *args):
    """``parse(*args)``; BadInput is a valid outcome, any other exception fails."""
    try:
        return parse(*args)
    except BadInput:
        return None


# ------------------------------------------------------------------ SCALE-Sim CSV

_HEADERS = [
    "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
    "Num Filter, Strides,",
    "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
    "Num Filter, Stride height, Stride width,",
    "Layer, M, N, K,",
]
_GOOD_CELL = st.integers(1, 40).map(str)
_BAD_CELL = st.one_of(
    st.integers(-3, 0).map(str),
    st.integers(2 ** 62, 2 ** 70).map(str),
    st.sampled_from(["", " ", "x", "1.5", "+4", "\u0663", "\uff14", "1e3", "DP", "-0",
                     "9" * 30, "\t7 "]),
    st.text(max_size=6),
)


@st.composite
def _scalesim_row(draw, width: int) -> str:
    """Mostly well-formed rows (so the importer's accepting path is fuzzed too: filters
    no larger than the IFMAP), some with a bad cell or the wrong number of cells."""
    if width == 3:  # GEMM form: M, N, K
        cells = [draw(_GOOD_CELL) for _ in range(3)]
    else:
        ih, iw = draw(st.integers(1, 40)), draw(st.integers(1, 40))
        cells = [ih, iw, draw(st.integers(1, ih)), draw(st.integers(1, iw)),
                 draw(st.integers(1, 8)), draw(st.integers(1, 8)),
                 *[draw(st.integers(1, 5)) for _ in range(width - 6)]]
        cells = [str(c) for c in cells]
    if draw(st.integers(0, 2)) == 0:
        cells[draw(st.integers(0, len(cells) - 1))] = draw(_BAD_CELL)
    if draw(st.integers(0, 4)) == 0:
        cells = cells[:-1] if draw(st.booleans()) else cells + [draw(_GOOD_CELL)]
    return ",".join([draw(st.sampled_from(["c1", "DP_c", "fc", "", "a b"])), *cells]) + ","


@st.composite
def _scalesim_texts(draw) -> str:
    if draw(st.integers(0, 4)) == 0:
        return draw(st.text(max_size=200))
    header = draw(st.sampled_from(_HEADERS))
    width = header.count(",") - 1  # value columns after the name
    rows = draw(st.lists(_scalesim_row(width), max_size=5))
    return "\n".join([header, *rows]) + "\n"


@given(text=_scalesim_texts())
def test_scalesim_parser_accepts_or_rejects_with_bad_input(tmp_path_factory, text):
    from pysim.workload.importers.scalesim import import_scalesim
    path = tmp_path_factory.mktemp("csv") / "net.csv"
    path.write_bytes(text.encode("utf-8", errors="replace"))  # lone surrogates -> '?'
    trace = _parses_or_bad_input(import_scalesim, path)
    if trace is not None:
        for gemm in trace.gemms():
            assert min(gemm.m, gemm.k, gemm.n, gemm.count) >= 1


# --------------------------------------------------------------------- trace JSON

_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)

_VALID_LAYER = {"name": "fc", "op": "linear", "batch": 2, "in_features": 3,
                "out_features": 4, "phases": ["forward"], "repeat": 1}
_LAYER_KEYS = sorted(_VALID_LAYER) + ["kernel", "stride", "padding", "groups", "tensors",
                                      "needs_input_grad", "source", "height"]


_PLAUSIBLE = st.one_of(st.integers(1, 9), st.lists(st.integers(0, 4), min_size=2, max_size=2),
                      st.booleans(), st.sampled_from(["forward", ["forward", "wgrad"], "x",
                                                      ["dgrad"], "conv2d", "linear"]))


@st.composite
def _trace_documents(draw):
    """A valid trace with some fields replaced by arbitrary JSON, or arbitrary JSON."""
    if draw(st.integers(0, 3)) == 0:
        return draw(_JSON)
    doc = {"format": "s2fp8-trace", "version": 1, "model": "m",
           "layers": [dict(_VALID_LAYER)]}
    value = st.one_of(_JSON, _PLAUSIBLE, _PLAUSIBLE)  # half of them plausible
    for _ in range(draw(st.integers(0, 3))):  # the layer first: "layers" may go next
        doc["layers"][0][draw(st.sampled_from(_LAYER_KEYS))] = draw(value)
    if draw(st.integers(0, 3)) == 0:
        doc[draw(st.sampled_from(["format", "version", "model", "layers", "source"]))] = \
            draw(_JSON)
    return doc


@given(doc=_trace_documents())
def test_trace_parser_accepts_or_rejects_with_bad_input(tmp_path_factory, doc):
    from pysim.workload.trace import load_trace
    path = tmp_path_factory.mktemp("trace") / "t.json"
    path.write_text(json.dumps(doc))
    trace = _parses_or_bad_input(load_trace, path)
    if trace is not None:
        trace.gemms()


@given(text=st.text(alphabet=st.sampled_from('[]{}",:0123456789-.eE tfnrul\\ ax'),
                    max_size=80))
def test_trace_parser_on_json_like_text(tmp_path_factory, text):
    from pysim.workload.trace import load_trace
    path = tmp_path_factory.mktemp("trace") / "t.json"
    path.write_text(text)
    _parses_or_bad_input(load_trace, path)


_RAW_TOKENS = ["9" * 5000, "-" + "9" * 30, str(1 << 63), "1e999", "-0", "NaN", "Infinity",
               "[" * 100_000 + "]" * 100_000, '"\\ud800"', "00", "1.0", "true"]


@given(key=st.sampled_from(_LAYER_KEYS + ["version", "layers"]),
       token=st.sampled_from(_RAW_TOKENS))
def test_trace_parser_on_raw_json_tokens(tmp_path_factory, key, token):
    """Values JSON can spell but Python objects cannot round-trip: huge integers (Python
    refuses more than 4300 digits), deep nesting (the decoder recurses), NaN."""
    from pysim.workload.trace import load_trace
    layer = dict(_VALID_LAYER)
    layer[key] = "@TOKEN@"
    doc = {"format": "s2fp8-trace", "version": 1, "model": "m", "layers": [layer]}
    if key in ("version", "layers"):
        doc[key] = "@TOKEN@"
        layer.pop(key)
    path = tmp_path_factory.mktemp("trace") / "t.json"
    path.write_text(json.dumps(doc).replace('"@TOKEN@"', token))
    _parses_or_bad_input(load_trace, path)


# ----------------------------------------------------- MAC vector files via the CLI

_VECTOR_NAMES = ["table_a", "table_b", "codes_a", "codes_b", "init", "expected"]
_DTYPES = [np.uint8, np.uint32, np.float32, np.int64]


@st.composite
def _vector_files(draw) -> bytes:
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=300))
    arrays = {}
    for name in draw(st.lists(st.sampled_from(_VECTOR_NAMES + ["extra"]), unique=True,
                              max_size=7)):
        shape = draw(st.sampled_from([(TABLE_ENTRIES,), (2, 3), (2,), (0,), (), (1, 0)]))
        arrays[name] = np.zeros(shape, draw(st.sampled_from(_DTYPES)))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    cut = draw(st.sampled_from([None, None, 10, len(data) // 2]))
    return data if cut is None else data[:cut]


@given(content=_vector_files())
@settings(max_examples=max(25, settings.default.max_examples // 4))
def test_vector_files_via_cli_exit_0_or_2(tmp_path_factory, monkeypatch, content):
    """A file that validates would run the RTL: the run is replaced by a stub, only
    the validation is fuzzed."""
    import hw.tb.mac_checks
    from pysim.cli import main
    monkeypatch.setattr(hw.tb.mac_checks, "run_vector_file", lambda *a, **k: types.SimpleNamespace(
        name="", ok=True, errors=[], mismatches=0, vectors=1, seconds=0.0, rate=0,
        notes=[], first_mismatch=""))
    path = tmp_path_factory.mktemp("vectors") / "v.npz"
    path.write_bytes(content)
    assert main(["regress", "--vectors", str(path)]) in (0, 2)


# ------------------------------------------------------------------------ numerics

_FLOATS = st.one_of(
    hnp.arrays(np.float32, hnp.array_shapes(max_dims=2, max_side=20),
               elements=st.floats(width=32, allow_nan=True, allow_infinity=True)),
    hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=20),
               elements=st.floats(allow_nan=True, allow_infinity=True)),
)


@given(x=_FLOATS)
def test_encode_decode_stats_on_arbitrary_arrays(x):
    if not np.isfinite(x).all():
        for call in (stats, encode):
            with pytest.raises(ValueError, match="NaN or Inf"):
                call(x)
        return
    mu, m, alpha, beta = stats(x)
    assert np.isfinite(alpha) and alpha > 0 and np.isfinite(beta)
    t = encode(x)
    assert t.codes.shape == x.shape
    # codes are a pure function of (x, stored alpha, stored beta)
    assert np.array_equal(encode_with(x, t.alpha, t.beta), t.codes)
    # signs kept, zeros stay zero, no Inf/NaN code
    magnitude = t.codes & E5M2.magnitude_mask
    assert np.all(np.isfinite(E5M2_VALUES[magnitude]))
    assert np.all(magnitude[x == 0] == 0)
    nonzero = magnitude != 0
    assert np.array_equal(np.signbit(x)[nonzero], (t.codes >> 7).astype(bool)[nonzero])


@given(alpha=st.floats(1e-3, 1e6), beta=st.floats(-1e6, 1e6),
       mant_bits=st.integers(1, 24))
def test_decode_table_monotonic_in_the_code(alpha, beta, mant_bits):
    table = decode_table(alpha, beta, mant_bits).view(np.float32)
    finite = np.isfinite(E5M2_VALUES[:TABLE_ENTRIES])
    values = table[finite]
    assert values[0] == 0 and np.all(values >= 0)
    assert np.all(values[1:] >= values[:-1]), values  # non-decreasing (Inf included)


@given(x=_FLOATS.filter(lambda a: np.isfinite(a).all() and a.size))
def test_larger_magnitude_never_gets_a_smaller_code(x):
    """Within one tensor the code magnitude is monotonic in |x| (one map for all)."""
    t = encode(x)
    order = np.argsort(np.abs(x.astype(np.float64)).ravel(), kind="stable")
    magnitudes = (t.codes & E5M2.magnitude_mask).ravel()[order]
    assume(magnitudes.size > 1)
    assert np.all(np.diff(magnitudes.astype(np.int16)) >= 0)


# --------------------------------------------------------------- ONNX attributes

_BAD_INTS = st.lists(st.integers(-2, 5), min_size=1, max_size=5)  # onnx.helper needs one


@st.composite
def _conv_attributes(draw, kernel) -> dict:
    """Conv attributes, each well-formed two times in three (so the accepting path is
    fuzzed too), else an arbitrary list."""
    good = {"kernel_shape": st.just(list(kernel)),
            "strides": st.lists(st.integers(1, 3), min_size=2, max_size=2),
            "pads": st.lists(st.integers(0, 2), min_size=4, max_size=4),
            "dilations": st.lists(st.integers(1, 2), min_size=2, max_size=2)}
    attrs = {}
    for name in draw(st.lists(st.sampled_from(["kernel_shape", "strides", "pads",
                                               "dilations", "group", "auto_pad"]),
                              unique=True, max_size=6)):
        if name == "group":
            attrs[name] = draw(st.integers(-1, 4))  # overrides the well-formed group
        elif name == "auto_pad":
            attrs[name] = draw(st.sampled_from(["NOTSET", "VALID", "SAME_UPPER",
                                                "SAME_LOWER", "BOGUS"]))
        else:
            attrs[name] = draw(good[name] if draw(st.integers(0, 2)) else _BAD_INTS)
    return attrs


@st.composite
def _onnx_cases(draw):
    kernel = draw(st.tuples(st.integers(1, 4), st.integers(1, 4)))
    return (draw(_conv_attributes(kernel)), draw(st.integers(1, 4)),
            draw(st.sampled_from([1, 1, 2, 4, 3])), kernel,
            (draw(st.sampled_from([0, 0, 0, 1])), draw(st.integers(0, 1))))


@given(case=_onnx_cases())
@example(case=({"strides": [0, 0], "auto_pad": "SAME_UPPER"}, 1, 1, (1, 1), (0, 0)))
@settings(max_examples=max(40, settings.default.max_examples // 3))
def test_onnx_attributes_accept_or_reject_with_bad_input(tmp_path_factory, case):
    """A Conv with arbitrary attributes and weight shape, then a Gemm with arbitrary
    transA/transB: imported, or a BadInput naming the node."""
    attrs, out, group, kernel, trans = case
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from pysim.workload.importers.onnx_model import import_onnx
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])
    f = helper.make_tensor_value_info("f", TensorProto.FLOAT, ["N", 6])
    attrs.setdefault("group", group)
    weight = (out * group, max(1, 4 // group), *kernel)  # group 3: channels mismatch
    inits = [numpy_helper.from_array(np.zeros(weight, np.float32), "w"),
             numpy_helper.from_array(np.zeros((3, 6) if trans[1] else (6, 3), np.float32),
                                     "wg")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **attrs),
             helper.make_node("Gemm", ["f", "wg"], ["g"], name="fc", transA=trans[0],
                              transB=trans[1])]
    graph = helper.make_graph(nodes, "fuzz", [x, f], [], initializer=inits)
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    trace = _parses_or_bad_input(import_onnx, path)
    if trace is not None:
        trace.gemms()
