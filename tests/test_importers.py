"""SCALE-Sim CSV and ONNX importers: GEMM shapes, phases, unsupported ops, errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pysim.cli import main
from pysim.workload.importers import import_file, load_input
from pysim.workload.importers.scalesim import import_scalesim
from pysim.workload.layers import Conv2d, Linear, MatMul
from pysim.workload.trace import TraceError, load_trace

DATA = Path(__file__).parent / "data"

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


# ------------------------------------------------------------------ SCALE-Sim

def scalesim_conv_gemm(ih, iw, fh, fw, ch, nf, sh, sw=None):
    """SCALE-Sim's own definition (topology_utils.topo_calc_hyperparams)."""
    sw = sh if sw is None else sw
    oh = math.ceil((ih - fh + sh) / sh)
    ow = math.ceil((iw - fw + sw) / sw)
    return oh * ow, fh * fw * ch, nf  # M, K, N


def read_rows(path):
    lines = [l for l in path.read_text().splitlines()[1:] if l.strip()]
    return [[c.strip() for c in l.split(",")[:-1]] for l in lines]


def test_scalesim_conv_form_matches_scalesim_definition():
    trace = import_scalesim(DATA / "alexnet.csv")
    rows = read_rows(DATA / "alexnet.csv")
    gemms = trace.gemms()
    assert trace.model == "alexnet" and len(gemms) == len(rows) == 8
    for row, layer, g in zip(rows, trace.layers, gemms):
        ih, iw, fh, fw, ch, nf, s = map(int, row[1:8])
        assert layer.name == row[0] and g.phase == "forward" and g.count == 1
        assert isinstance(layer.layer, Conv2d) and layer.layer.batch == 1
        assert layer.layer.padding == (0, 0)
        assert (g.m, g.k, g.n) == scalesim_conv_gemm(ih, iw, fh, fw, ch, nf, s)
    assert (gemms[0].m, gemms[0].k, gemms[0].n) == (55 * 55, 11 * 11 * 3, 96)


def test_scalesim_conv_two_stride_columns_and_depthwise():
    trace = import_scalesim(DATA / "mobilenet_dw.csv")
    g = trace.gemms()
    # 226 - 3 = 223 is odd: SCALE-Sim counts ceil(225 / 2) = 113 rows (padding 1 here)
    assert (g[0].m, g[0].k, g[0].n, g[0].count) == (113 * 113, 27, 32, 1)
    assert trace.layers[0].layer.padding == (1, 1)
    # "DP" layer: SCALE-Sim expands it into Channels single-channel convolutions
    assert trace.layers[1].layer.groups == 32
    assert (g[1].m, g[1].k, g[1].n, g[1].count) == (112 * 112, 9, 1, 32)
    assert (g[2].m, g[2].k, g[2].n) == (112 * 112, 32, 64)


def test_scalesim_gemm_form_exact_mnk():
    trace = import_scalesim(DATA / "gemm_mnk.csv")
    rows = read_rows(DATA / "gemm_mnk.csv")
    for row, layer, g in zip(rows, trace.layers, trace.gemms()):
        m, n, k = map(int, row[1:4])
        assert isinstance(layer.layer, Linear)
        assert (g.layer, g.m, g.k, g.n, g.count) == (row[0], m, k, n, 1)


def test_scalesim_training_and_batch():
    trace = import_scalesim(DATA / "alexnet.csv", batch=4, training=True)
    gemms = trace.gemms()
    assert len(gemms) == 8 * 3 - 1  # the first layer has no dgrad
    assert [g.phase for g in gemms[:2]] == ["forward", "wgrad"]
    assert gemms[0].m == 4 * 55 * 55


def test_scalesim_whitespace_no_trailing_comma_blank_and_extra_columns(tmp_path):
    path = tmp_path / "messy.csv"
    path.write_text("Layer name , IFMAP  Height,IFMAP Width,Filter Height,Filter Width,"
                    "Channels,Num Filter,Strides,,,Eh\n,,,,,,,,,,\n\n"
                    "\tc1 , 8 ,8,3,3,2,4,1,,,9\nc2,6,6,3,3,4,4,1\n")
    g = import_scalesim(path).gemms()
    assert [(x.m, x.k, x.n) for x in g] == [(36, 18, 4), (16, 36, 4)]
    path = tmp_path / "mnk.csv"
    path.write_text("Layer Name, M, N, K,\nTest 1, 256, 128, 256,")
    (g,) = import_scalesim(path).gemms()
    assert (g.layer, g.m, g.k, g.n) == ("Test 1", 256, 256, 128)


@pytest.mark.parametrize("text, expected", [
    ("Layer, M, N, K,\nfc, 4, x, 8,\n", "line 2: layer 'fc': column 'N': must be an integer >= 1, got 'x'"),
    ("Layer, M, N, K,\nfc, 4, 0, 8,\n", "column 'N': must be an integer >= 1, got 0"),
    ("Layer, M, N, K,\nfc, 4, 8,\n", "line 2: column 'K': missing"),
    ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
     "Num Filter, Strides,\nc1, 2, 8, 3, 3, 1, 1, 1,\n",
     "line 2: layer 'c1': column 'IFMAP Height': 2 is smaller than the filter (3)"),
    ("Name, A, B,\n", "line 1: not a SCALE-Sim topology header"),
    ("\n\n", "empty file"),
])
def test_scalesim_errors(tmp_path, text, expected):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TraceError) as info:
        import_scalesim(path)
    assert str(info.value).startswith(str(path)) and expected in str(info.value)
    assert main(["cycles", str(path), "--rows", "4", "--cols", "4"]) == 2


# ---------------------------------------------------------------------- ONNX

def _init(name, shape):
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    assert path.stat().st_size < 100_000
    return path


@pytest.fixture
def conv_onnx(tmp_path):
    """x[batch,3,32,32] -> c1 (3x3/2, pad 1) -> relu -> c2 (group 4, dilation 2, pad 2)
    -> c3 (2x2, SAME_UPPER: asymmetric pads) -> c4 (1-D conv is not here) -> maxpool
    -> gap -> flatten -> fc (Gemm transB)."""
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["xn"], name="normalize"),
        helper.make_node("Conv", ["xn", "w1"], ["y1"], name="c1", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["y1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["y2"], name="c2", group=4,
                         dilations=[2, 2], pads=[2, 2, 2, 2]),
        helper.make_node("Conv", ["y2", "w3"], ["y3"], name="c3", auto_pad="SAME_UPPER",
                         kernel_shape=[2, 2]),
        helper.make_node("Conv", ["y3", "w4"], ["y4"], name="c4", pads=[0, 1, 2, 0],
                         strides=[1, 2]),
        helper.make_node("MaxPool", ["y4"], ["p"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wfc", "bfc"], ["out"], name="fc", transB=1),
    ]
    inits = [_init("mean", [1, 3, 1, 1]), _init("w1", [16, 3, 3, 3]),
             _init("w2", [32, 4, 3, 3]), _init("b2", [32]), _init("w3", [24, 32, 2, 2]),
             _init("w4", [8, 24, 3, 3]), _init("wfc", [10, 8]), _init("bfc", [10])]
    graph = helper.make_graph(nodes, "convnet", [_vi("x", ["batch", 3, 32, 32])],
                              [_vi("out", ["batch", 10])], inits)
    return _save(graph, tmp_path / "convnet.onnx")


@pytest.fixture
def matmul_onnx(tmp_path):
    """Batched MatMul with broadcasting, a MatMul with a 2-D weight, a Gemm of two
    activations with transA, a Softmax (unsupported) and a 1-D Conv."""
    nodes = [
        helper.make_node("MatMul", ["a", "b"], ["ab"], name="bmm"),          # [2,4,8,16]@[4,16,32]
        helper.make_node("Softmax", ["ab"], ["s"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["s", "w"], ["sw"], name="proj"),         # [2,4,8,32]@[32,24]
        helper.make_node("MatMul", ["v", "u"], ["vu"], name="vec"),          # [16]@[3,16,5]
        helper.make_node("Gemm", ["p", "q"], ["pq"], name="", transA=1),     # p [7,5]^T @ q [7,9]
        helper.make_node("Conv", ["seq", "wc"], ["c"], name="conv1d", kernel_shape=[3],
                         pads=[1, 1]),                                     # [batch,4,20]
        helper.make_node("Conv", ["vol", "wv"], ["cv"], name="conv3d"),     # 3-D: unsupported
    ]
    graph = helper.make_graph(
        nodes, "mm",
        [_vi("a", [2, 4, 8, 16]), _vi("b", [4, 16, 32]), _vi("v", [16]),
         _vi("u", [3, 16, 5]), _vi("p", [7, 5]), _vi("q", [7, 9]),
         _vi("seq", [None, 4, 20]), _vi("vol", [1, 2, 4, 4, 4])],
        [_vi("sw", None), _vi("vu", None), _vi("pq", None), _vi("c", None),
         _vi("cv", None)],
        [_init("w", [32, 24]), _init("wc", [6, 4, 3]), _init("wv", [3, 2, 1, 1, 1])])
    return _save(graph, tmp_path / "mm.onnx")


def torch_like_conv(n, c, h, w, out, k, s, p, d, g):
    ho = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    wo = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    return n * ho * wo, c // g * k[0] * k[1], out // g, g, ho, wo


def test_onnx_conv_shapes(conv_onnx):
    trace = import_file(conv_onnx, batch=2)
    by_name = {e.name: e for e in trace.layers}
    assert list(by_name) == ["c1", "c2", "c3", "c4", "fc"]
    gemms = {g.layer: g for g in trace.gemms()}
    m, k, n, count, h1, w1 = torch_like_conv(2, 3, 32, 32, 16, (3, 3), (2, 2), (1, 1), (1, 1), 1)
    assert (gemms["c1"].m, gemms["c1"].k, gemms["c1"].n, gemms["c1"].count) == (m, k, n, count)
    assert (h1, w1) == (16, 16)
    m, k, n, count, h2, w2 = torch_like_conv(2, 16, 16, 16, 32, (3, 3), (1, 1), (2, 2), (2, 2), 4)
    assert (gemms["c2"].m, gemms["c2"].k, gemms["c2"].n, gemms["c2"].count) == (m, k, n, 4)
    assert (h2, w2) == (16, 16) and k == 4 * 9 and n == 8
    # SAME_UPPER, kernel 2, stride 1: pads (0 begin, 1 end): output 16x16
    c3 = by_name["c3"].layer
    assert (c3.out_height, c3.out_width) == (16, 16)
    assert (gemms["c3"].m, gemms["c3"].k, gemms["c3"].n) == (2 * 256, 32 * 4, 24)
    # explicit asymmetric pads [h_begin 0, w_begin 1, h_end 2, w_end 0], stride (1, 2)
    c4 = by_name["c4"].layer
    assert (c4.out_height, c4.out_width) == ((16 + 2 - 3) + 1, (16 + 1 - 3) // 2 + 1)
    assert gemms["c4"].m == 2 * c4.out_height * c4.out_width and gemms["c4"].k == 24 * 9
    assert (gemms["fc"].m, gemms["fc"].k, gemms["fc"].n) == (2, 8, 10)
    assert isinstance(by_name["fc"].layer, Linear)
    assert [(u.node, u.op_type) for u in trace.unsupported] == [
        ("pool", "MaxPool"), ("gap", "GlobalAveragePool")]


def test_onnx_default_batch_and_training_phases(conv_onnx):
    trace = import_file(conv_onnx, training=True)
    assert trace.gemms()[0].m == 16 * 16  # symbolic batch -> 1
    phases = [(g.layer, g.phase) for g in trace.gemms()]
    # c1 reads the (normalized) graph input: no dgrad
    assert phases[:2] == [("c1", "forward"), ("c1", "wgrad")]
    assert ("c2", "dgrad") in phases and ("fc", "dgrad") in phases
    assert len(phases) == 5 * 3 - 1


def test_onnx_matmul_shapes(matmul_onnx):
    trace = import_file(matmul_onnx, batch=3)
    by_name = {e.name: e for e in trace.layers}
    gemms = {g.layer: g for g in trace.gemms()}
    assert list(by_name) == ["bmm", "proj", "vec", "Gemm_4", "conv1d"]
    # [2,4,8,16] @ [4,16,32]: batch dims (2,4) x (4,) broadcast -> 8 GEMMs of 8x16x32
    assert isinstance(by_name["bmm"].layer, MatMul)
    assert (gemms["bmm"].m, gemms["bmm"].k, gemms["bmm"].n, gemms["bmm"].count) == (8, 16, 32, 8)
    # [2,4,8,32] @ W[32,24]: one GEMM with the batch folded into M
    assert isinstance(by_name["proj"].layer, Linear)
    assert (gemms["proj"].m, gemms["proj"].k, gemms["proj"].n, gemms["proj"].count) == (64, 32, 24, 1)
    # [16] @ [3,16,5]: 1-D promoted to [1,16]; 3 GEMMs 1x16x5
    assert (gemms["vec"].m, gemms["vec"].k, gemms["vec"].n, gemms["vec"].count) == (1, 16, 5, 3)
    # Gemm transA: p^T [5,7] @ q [7,9]; q is an activation -> MatMul
    assert isinstance(by_name["Gemm_4"].layer, MatMul)
    assert (gemms["Gemm_4"].m, gemms["Gemm_4"].k, gemms["Gemm_4"].n) == (5, 7, 9)
    # 1-D conv: height 1, symbolic batch 3
    assert (gemms["conv1d"].m, gemms["conv1d"].k, gemms["conv1d"].n) == (3 * 20, 12, 6)
    assert [(u.node, u.op_type) for u in trace.unsupported] == [
        ("softmax", "Softmax"), ("conv3d", "Conv")]


def test_onnx_errors(tmp_path, capsys):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x00not a protobuf at all\xff\xff")
    with pytest.raises(TraceError, match=r"garbage\.onnx: not a valid ONNX model"):
        import_file(bad)
    # a symbolic non-batch dimension cannot be resolved
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
        [_vi("x", ["batch", "seq", 8])], [_vi("y", None)], [_init("w", [8, 4])])
    path = _save(graph, tmp_path / "sym.onnx")
    with pytest.raises(TraceError, match=r"sym\.onnx: node 'mm' \(MatMul\): input 'x'"):
        import_file(path)
    assert main(["cycles", str(path), "--rows", "4", "--cols", "4"]) == 2
    assert "node 'mm'" in capsys.readouterr().err


def _fc_onnx(path, batch_dim):
    """x[batch_dim, 8] @ W[8, 4]: one Linear of M = the batch."""
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")],
                              "fc", [_vi("x", [batch_dim, 8])], [_vi("y", None)],
                              [_init("w", [8, 4])])
    return _save(graph, path)


def test_onnx_batch_refused_for_a_fixed_batch(tmp_path, capsys):
    """issue 9: before, --batch 3 on a model whose batch is fixed at 1 was silently
    ignored (exit 0, the batch-1 cycles)."""
    path = _fc_onnx(tmp_path / "model.onnx", 1)
    outputs = [tmp_path / "o.csv", tmp_path / "o.json"]
    assert main(["cycles", str(path), "--rows", "4", "--cols", "4", "--batch", "3",
                 "--csv", str(outputs[0]), "--json", str(outputs[1])]) == 2
    err = capsys.readouterr().err
    assert err == (f"s2fp8 cycles: error: {path}: input 'x' has a fixed batch of 1; "
                   f"--batch applies to a symbolic batch dimension (dim_param) only\n")
    assert not any(out.exists() for out in outputs)
    assert main(["trace", "import", str(path), "-o", str(outputs[1]), "--batch", "3"]) == 2
    assert "input 'x' has a fixed batch of 1" in capsys.readouterr().err
    assert not outputs[1].exists()
    # --batch equal to the fixed batch ignores nothing: accepted, same GEMMs as without
    assert import_file(path, batch=1).gemms() == import_file(path).gemms()
    # every input whose fixed batch differs is named; a scalar input has no batch
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc"),
         helper.make_node("MatMul", ["z", "w"], ["v"], name="fc2")], "fc2",
        [_vi("x", [2, 8]), _vi("z", [5, 8]), _vi("s", [])], [_vi("y", None), _vi("v", None)],
        [_init("w", [8, 4])])
    two = _save(graph, tmp_path / "two.onnx")
    with pytest.raises(TraceError, match=r"two\.onnx: inputs 'x', 'z' have fixed batches "
                                         r"of 2, 5; --batch applies"):
        import_file(two, batch=3)
    with pytest.raises(TraceError, match=r"two\.onnx: input 'z' has a fixed batch of 5;"):
        import_file(two, batch=2)


def test_onnx_batch_applies_to_a_symbolic_batch(tmp_path, capsys):
    """The same model with a dim_param batch: --batch sets M, and the cycles follow."""
    path = _fc_onnx(tmp_path / "model.onnx", "N")
    assert [(g.m, g.k, g.n) for g in import_file(path, batch=3).gemms()] == [(3, 8, 4)]
    totals = {}
    for batch in ("1", "8"):
        out = tmp_path / f"b{batch}.json"
        assert main(["cycles", str(path), "--rows", "4", "--cols", "4", "--batch", batch,
                     "--json", str(out), "-q"]) == 0
        totals[batch] = json.loads(out.read_text())["totals"]
    capsys.readouterr()
    assert (totals["1"]["MACs"], totals["8"]["MACs"]) == (1 * 8 * 4, 8 * 8 * 4)
    assert totals["8"]["cycles"] > totals["1"]["cycles"]


def test_trace_import_cli_onnx_warns_and_writes(conv_onnx, tmp_path, capsys):
    out = tmp_path / "convnet.json"
    assert main(["trace", "import", str(conv_onnx), "-o", str(out), "--batch", "2",
                 "--training"]) == 0
    captured = capsys.readouterr()
    assert "MaxPool" in captured.err and "'pool'" not in captured.err and "pool" in captured.err
    assert "wrote" in captured.out
    trace = load_trace(out)
    assert [(u.node, u.op_type) for u in trace.unsupported] == [
        ("pool", "MaxPool"), ("gap", "GlobalAveragePool")]
    assert trace.gemms() == import_file(conv_onnx, batch=2, training=True).gemms()


def test_trace_import_cli_csv_and_json(tmp_path):
    out = tmp_path / "alexnet.json"
    assert main(["trace", "import", str(DATA / "alexnet.csv"), "-o", str(out)]) == 0
    assert load_trace(out).gemms() == import_scalesim(DATA / "alexnet.csv").gemms()
    again = tmp_path / "again.json"
    assert main(["trace", "import", str(out), "-o", str(again), "--training"]) == 0
    assert len(load_trace(again).gemms()) == 23


def test_trace_import_cli_errors(tmp_path, capsys):
    out = tmp_path / "o.json"
    assert main(["trace", "import", str(tmp_path / "missing.csv"), "-o", str(out)]) == 2
    assert main(["trace", "import", str(DATA / "alexnet.csv"), "-o", str(out),
                 "--batch", "0"]) == 2
    (tmp_path / "m.txt").write_text("x")
    assert main(["trace", "import", str(tmp_path / "m.txt"), "-o", str(out)]) == 2
    assert main(["trace", "import", str(DATA / "alexnet.csv"),
                 "-o", str(tmp_path / "nodir" / "o.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("s2fp8 trace: error: ") for line in err)
    assert "missing.csv: no such file" in err[0]
    assert "unknown input format '.txt'" in err[2]
    assert not out.exists()


def test_load_input_builtin_and_unknown():
    assert load_input("ncf").gemms()[0].phase == "forward"
    with pytest.raises(TraceError, match="not a built-in model"):
        load_input("vgg19")


def test_onnx_import_of_a_real_exported_model_matches_its_pytorch_capture():
    """tests/data/digits_cnn.onnx is the repository's digits CNN exported by
    torch.onnx.export (TorchScript exporter, dynamic batch); its training GEMMs, imported
    with batch 32, are exactly those the PyTorch capture recorded for the same network
    (traces/digits_cnn, one real training step at batch 32)."""
    root = Path(__file__).resolve().parent.parent
    imported = load_input(root / "tests" / "data" / "digits_cnn.onnx", batch=32, training=True)
    captured = load_trace(root / "traces" / "digits_cnn" / "digits_cnn.json")

    def shapes(gemms):
        return sorted((g.phase, g.m, g.k, g.n, g.count) for g in gemms)

    assert shapes(imported.gemms()) == shapes(captured.gemms())
    assert "MaxPool" in str(imported.unsupported)
