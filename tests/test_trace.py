"""Trace JSON format: validation messages, round trip, lazy tensor loading."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pysim.cli import BadInput, main
from pysim.workload.layers import PHASES, Conv2d, Linear, MatMul
from pysim.workload.models import build_model, training_step_gemms
from pysim.workload.trace import (FORMAT, VERSION, Trace, TraceError, TraceLayer, Unsupported,
                         load_trace, save_trace, trace_from_layers)

GOOD = {
    "format": FORMAT, "version": VERSION, "model": "tiny",
    "layers": [
        {"name": "conv1", "op": "conv2d", "phases": ["forward", "wgrad"], "batch": 2,
         "in_channels": 3, "out_channels": 8, "height": 8, "width": 8, "kernel": 3,
         "stride": [1, 1], "padding": 1, "needs_input_grad": False},
        {"name": "conv2", "op": "conv2d", "phase": "forward", "batch": 2, "in_channels": 8,
         "out_channels": 8, "height": 8, "width": 8, "kernel": [3, 1], "groups": 2},
        {"name": "fc", "op": "linear", "phases": ["forward", "dgrad", "wgrad"], "batch": 2,
         "in_features": 512, "out_features": 10, "repeat": 3},
        {"name": "attn", "op": "matmul", "batch": 4, "m": 5, "k": 6, "n": 7},
    ],
}


def write(tmp_path, data, name="t.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=1))
    return path


def mutate(layer_index, **changes):
    data = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if value is KeyError:
            del data["layers"][layer_index][key]
        else:
            data["layers"][layer_index][key] = value
    return data


def test_load_good_trace_maps_onto_layers(tmp_path):
    trace = load_trace(write(tmp_path, GOOD))
    assert trace.model == "tiny" and len(trace.layers) == 4
    c1, c2, fc, attn = (e.layer for e in trace.layers)
    assert c1 == Conv2d("conv1", 2, 3, 8, 8, 8, kernel=3, padding=1, needs_input_grad=False)
    assert c2.kernel == (3, 1) and c2.groups == 2
    assert fc == Linear("fc", 2, 512, 10) and trace.layers[2].repeat == 3
    assert attn == MatMul("attn", 4, 5, 6, 7) and trace.layers[3].phases == ("forward",)
    gemms = trace.gemms()
    assert [(g.layer, g.phase) for g in gemms] == [
        ("conv1", "forward"), ("conv1", "wgrad"), ("conv2", "forward"),
        ("fc", "forward"), ("fc", "dgrad"), ("fc", "wgrad"), ("attn", "forward")]
    assert gemms[3].count == 3 and (gemms[3].m, gemms[3].k, gemms[3].n) == (2, 512, 10)


def test_round_trip(tmp_path):
    layers = build_model("ncf") + [Conv2d("c", 2, 4, 8, 9, 7, kernel=(3, 2), stride=2,
                                          padding=(1, 0), dilation=(1, 2), groups=2)]
    trace = trace_from_layers("mix", layers, PHASES, source="test",
                              unsupported=[Unsupported("pool", "MaxPool")])
    trace.layers[1] = TraceLayer(trace.layers[1].layer, ("forward", "dgrad"), 5)
    path = tmp_path / "sub" / "mix.json"
    path.parent.mkdir()
    save_trace(trace, path)
    again = load_trace(path)
    assert [e.layer for e in again.layers] == [e.layer for e in trace.layers]
    assert [(e.phases, e.repeat) for e in again.layers] == [(e.phases, e.repeat)
                                                           for e in trace.layers]
    assert again.gemms() == trace.gemms()
    assert again.unsupported == trace.unsupported and again.source == "test"
    save_trace(again, tmp_path / "copy.json")
    assert json.loads((tmp_path / "copy.json").read_text()) == json.loads(path.read_text())
    assert [p.name for p in path.parent.iterdir()] == ["mix.json"]  # no temp files left


def test_builtin_model_round_trip_equals_training_step(tmp_path):
    layers = build_model("resnet50")
    path = tmp_path / "r50.json"
    save_trace(trace_from_layers("resnet50", layers, PHASES), path)
    assert load_trace(path).gemms() == training_step_gemms(layers)


@pytest.mark.parametrize("data, message", [
    (mutate(1, stride=0), "layer 1 'conv2': field 'stride': must be an integer >= 1 or "
                          "a pair [h, w] of such integers, got 0"),
    (mutate(0, batch=0), "layer 0 'conv1': field 'batch': must be an integer >= 1, got 0"),
    (mutate(0, batch=2.0), "field 'batch': must be an integer >= 1, got 2.0"),
    (mutate(0, batch=True), "field 'batch': must be an integer >= 1, got true"),
    (mutate(0, padding=[1, -1]), "field 'padding': must be an integer >= 0 or a pair"),
    (mutate(0, kernel=[1, 2, 3]), "field 'kernel': must be an integer >= 1 or a pair"),
    (mutate(2, in_features=KeyError), "layer 2 'fc': field 'in_features': missing"),
    (mutate(2, strides=2), "layer 2 'fc': field 'strides': unknown field for op 'linear'"),
    (mutate(2, op="pool"), "layer 2 'fc': field 'op': must be one of 'linear', 'conv2d', "
                           "'matmul', got \"pool\""),
    (mutate(3, name=""), "layer 3: field 'name': must be a non-empty string, got \"\""),
    (mutate(3, name="fc"), "layer 3 'fc': field 'name': duplicate of layer 2"),
    (mutate(3, phase="backward"), "layer 3 'attn': field 'phase': must name phases among"),
    (mutate(2, phases=["forward", "forward"]), "field 'phases': phases must not repeat"),
    (mutate(2, phases=[]), "field 'phases': must be a non-empty list"),
    (mutate(2, repeat=0), "layer 2 'fc': field 'repeat': must be an integer >= 1, got 0"),
    (mutate(0, needs_input_grad="no"), "field 'needs_input_grad': must be true or false"),
    (mutate(1, in_channels=6, groups=4), "layer 1 'conv2': field 'in_channels' must be "
                                         "divisible by groups=4, got 6"),
    (mutate(0, height=1, padding=0), "layer 0 'conv1': field 'height' = 1 is too small"),
    ({**GOOD, "format": "other"}, "field 'format': must be 's2fp8-trace', got \"other\""),
    ({**GOOD, "version": 2}, "field 'version': 2 is newer than this simulator reads"),
    ({**GOOD, "layers": []}, "field 'layers': must be a non-empty list"),
    ({**GOOD, "extra": 1}, "field 'extra': unknown top-level field"),
    ([1, 2], "a trace must be a JSON object"),
    ('{"format": "s2fp8-trace",\n "version": 1,\n "layers": [}\n',
     "line 3, column 13: invalid JSON"),
])
def test_validation_errors(tmp_path, capsys, data, message):
    path = write(tmp_path, data, "resnet.json")
    with pytest.raises(TraceError) as info:
        load_trace(path)
    assert isinstance(info.value, BadInput)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text, text
    assert main(["cycles", str(path), "--rows", "8", "--cols", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_missing_trace_file(tmp_path, capsys):
    assert main(["cycles", str(tmp_path / "nope.json"), "--rows", "8", "--cols", "8"]) == 2
    assert "nope.json: no such file" in capsys.readouterr().err


# ------------------------------------------------------------------- tensors

def tensor_trace(tmp_path, tensors, layer=None):
    layer = layer or {"name": "fc", "op": "linear", "phases": ["forward", "wgrad"],
                      "batch": 4, "in_features": 6, "out_features": 3}
    data = {"format": FORMAT, "version": 1, "model": "m",
            "layers": [{**layer, "tensors": tensors}]}
    (tmp_path / "caps").mkdir(exist_ok=True)
    return write(tmp_path, data)


def test_tensors_lazy_load_and_shape(tmp_path):
    rng = np.random.default_rng(0)
    a, b, xt = rng.standard_normal((4, 6)), rng.standard_normal((6, 3)), rng.standard_normal((6, 4))
    np.savez(tmp_path / "ops.npz", a=a, b=b, xt=xt)
    np.save(tmp_path / "dy.npy", rng.standard_normal((4, 3)).astype(np.float32))
    path = tensor_trace(tmp_path, {"forward": {"a": "ops.npz#a", "b": "ops.npz#b"},
                                   "wgrad": {"a": "ops.npz#xt", "b": "dy.npy"}})
    trace = load_trace(path)
    fwd = trace.tensors("fc", "forward")
    np.testing.assert_array_equal(fwd["a"], a)
    np.testing.assert_array_equal(fwd["b"], b)
    assert trace.tensors(0, "wgrad")["b"].shape == (4, 3)
    # round trip into another directory rewrites the relative paths
    sub = tmp_path / "elsewhere"
    sub.mkdir()
    save_trace(trace, sub / "t.json")
    assert json.loads((sub / "t.json").read_text())["layers"][0]["tensors"]["forward"]["a"] \
        == "../ops.npz#a"
    np.testing.assert_array_equal(load_trace(sub / "t.json").tensors("fc")["a"], a)


def test_tensors_from_safetensors(tmp_path):
    from safetensors.numpy import save_file
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((6, 3))
    save_file({"x": a, "w": b}, str(tmp_path / "ops.safetensors"))
    trace = load_trace(tensor_trace(tmp_path, {"forward": {"a": "ops.safetensors#x",
                                                           "b": "ops.safetensors#w"}}))
    got = trace.tensors("fc", "forward")
    np.testing.assert_array_equal(got["a"], a)
    np.testing.assert_array_equal(got["b"], b)
    bad = load_trace(tensor_trace(tmp_path, {"forward": {"a": "ops.safetensors#nope",
                                                         "b": "ops.safetensors#w"}}))
    with pytest.raises(TraceError, match="nope"):
        bad.tensors("fc", "forward")


def test_tensor_short_form_and_count_axis(tmp_path):
    np.savez(tmp_path / "g.npz", a=np.ones((2, 5, 6)), b=np.ones((6, 7)))
    layer = {"name": "mm", "op": "matmul", "batch": 2, "m": 5, "k": 6, "n": 7}
    trace = load_trace(tensor_trace(tmp_path, {"a": "g.npz#a", "b": "g.npz#b"}, layer))
    got = trace.tensors("mm")
    assert got["a"].shape == (2, 5, 6) and got["b"].shape == (6, 7)


def test_tensor_errors(tmp_path):
    np.savez(tmp_path / "ops.npz", a=np.ones((4, 6)), bad=np.ones((5, 6)),
             nan=np.array([[0.0] * 6] * 3 + [[1, np.nan, np.inf, 2, np.nan, 0]]))
    # missing file: the path as written and the resolved path, at load time
    with pytest.raises(TraceError) as info:
        load_trace(tensor_trace(tmp_path, {"forward": {"a": "caps/missing.npz#a"}}))
    text = str(info.value)
    assert "layer 0 'fc': field 'tensors.forward.a'" in text
    assert "'caps/missing.npz' not found" in text
    assert str(tmp_path / "caps" / "missing.npz") in text
    for tensors, message in [
        ({"forward": {"a": "ops.npz"}}, "a .npz reference needs an array name"),
        ({"forward": {"a": "ops.txt#a"}}, "must end in .npz, .npy, .safetensors"),
        ({"forward": {"x": "ops.npz#a"}}, "roles must be a, b, c"),
        ({"dgrad": {"a": "ops.npz#a"}}, "phase 'dgrad' is not in the layer's phases"),
        ({"a": "ops.npz#a"}, "the short form"),
    ]:
        with pytest.raises(TraceError, match=message.replace(".", r"\.")):
            load_trace(tensor_trace(tmp_path, tensors))
    trace = load_trace(tensor_trace(tmp_path, {"forward": {"a": "ops.npz#bad"},
                                               "wgrad": {"a": "ops.npz#nope"}}))
    with pytest.raises(TraceError, match=r"shape \(5, 6\) does not match the forward GEMM "
                                         r"\(M=4, K=6, N=3\): expected \(4, 6\)"):
        trace.tensors("fc", "forward")
    with pytest.raises(TraceError, match="no array 'nope' in .*ops.npz \\(it holds: a, bad, nan\\)"):
        trace.tensors("fc", "wgrad")
    with pytest.raises(TraceError, match="no layer named 'zz'"):
        trace.tensors("zz")
    with pytest.raises(TraceError, match="phase 'dgrad' is not in the layer's phases"):
        trace.tensors("fc", "dgrad")
    trace = load_trace(tensor_trace(tmp_path, {"forward": {"a": "ops.npz#nan"}}))
    with pytest.raises(TraceError, match=r"2 NaN and 1 Inf values \(first at index \(3, 1\)\)"):
        trace.tensors("fc")


def test_safetensors_optional(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"\x00" * 16)
    trace = load_trace(tensor_trace(tmp_path, {"forward": {"b": "w.safetensors#b"}}))
    try:
        import safetensors  # noqa: F401
    except ImportError:
        with pytest.raises(TraceError, match="optional 'safetensors' package"):
            trace.tensors("fc")
    else:  # installed: the corrupt file is reported, not a traceback
        with pytest.raises(TraceError, match="cannot read"):
            trace.tensors("fc")


# ------------------------------------------------------------ layer rules, atomic writes

MINIMAL = {"linear": {"batch": 2, "in_features": 3, "out_features": 4},
           "conv2d": {"batch": 1, "in_channels": 2, "out_channels": 2, "height": 5,
                      "width": 5},
           "matmul": {"batch": 1, "m": 2, "k": 3, "n": 4}}


@pytest.mark.parametrize("op", sorted(MINIMAL))
def test_trace_fields_follow_the_layer_rules(tmp_path, op):
    """Every parameter of every op is checked by the layer's own rule (its kind and
    minimum), worded for JSON: the smallest allowed value loads, one below is refused."""
    from pysim.workload.layers import field_rules
    from pysim.workload.trace import OPS

    def load(**changes):
        layer = {"name": "x", "op": op, **MINIMAL[op], **changes}
        return load_trace(write(tmp_path, {"format": FORMAT, "version": VERSION,
                                           "model": "m", "layers": [layer]}))

    rules = field_rules(OPS[op])
    assert set(MINIMAL[op]) <= set(rules)
    for name, rule in rules.items():
        if rule.kind == "bool":
            assert getattr(load(**{name: False}).layers[0].layer, name) is False
            with pytest.raises(TraceError, match=f"field '{name}': must be true or false, "
                                                 f"got 1"):
                load(**{name: 1})
            continue
        # the smallest value loads (padding 0 needs no larger input than 5x5)
        assert load(**{name: rule.minimum}).layers[0].layer is not None
        expected = f"field '{name}': must be an integer >= {rule.minimum}"
        expected += " or a pair [h, w] of such integers" if rule.kind == "pair" else ", got"
        for bad in (rule.minimum - 1, 1.5, True, "2"):
            with pytest.raises(TraceError) as info:
                load(**{name: bad})
            assert expected in str(info.value), str(info.value)
    assert {r.minimum for r in field_rules(OPS["conv2d"]).values()} == {0, 1}


def test_atomic_write_many_is_all_or_nothing(tmp_path):
    from pysim.files import atomic_write, atomic_write_many

    atomic_write(tmp_path / "old.txt", "old")
    with pytest.raises(BadInput, match=r"missing/b.bin: cannot write: No such file"):
        atomic_write_many({tmp_path / "old.txt": "new", tmp_path / "missing" / "b.bin": b"b"})
    # the first file was staged before the second failed: neither it nor a temp file lands
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.txt"]
    assert (tmp_path / "old.txt").read_text() == "old"
    atomic_write_many({tmp_path / "old.txt": "new", tmp_path / "b.bin": b"\x00\xff"})
    assert (tmp_path / "old.txt").read_text() == "new"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "old.txt"]
