"""``s2fp8 cycles``: every input kind, totals equal pysim.perf.cycles.breakdown, output
files, and bad input (exit 2, one line, no partial files)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from pysim.cli import main
from pysim.perf.cycles import breakdown
from pysim.workload.importers.scalesim import import_scalesim
from pysim.workload.models import build_model, training_step_gemms
from pysim.perf.report import cycle_report
from pysim.perf.tiler import gemm_arrays
from pysim.workload.trace import PHASES, load_trace, save_trace, trace_from_layers

DATA = Path(__file__).parent / "data"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def expected_totals(gemms, rows, cols):
    s = gemm_arrays(gemms)
    b = breakdown(s.m, s.k, s.n, rows, cols, s.count)
    return int(b.total.sum()), int(s.macs.sum())


def run_json(tmp_path, capsys, *args):
    out = tmp_path / "out.json"
    assert main(["cycles", *map(str, args), "--json", str(out)]) == 0
    captured = capsys.readouterr()
    run_json.stderr = captured.err
    return json.loads(out.read_text()), captured.out


def test_builtin_model_totals_equal_breakdown(tmp_path, capsys):
    data, stdout = run_json(tmp_path, capsys, "resnet50", "--rows", 32, "--cols", 16)
    gemms = training_step_gemms(build_model("resnet50"))
    cycles, macs = expected_totals(gemms, 32, 16)
    assert data["totals"]["cycles"] == cycles and data["totals"]["MACs"] == macs
    assert data["totals"]["gemms"] == len(gemms) == len(data["gemms"]) == 161
    assert sum(r["cycles"] for r in data["gemms"]) == cycles
    assert data["array"] == {"rows": 32, "cols": 16, "mant_bits": 24, "acc_stages": 1}
    # all rows printed (header + 161 rows + totals)
    assert stdout.count(" forward ") + stdout.count(" dgrad ") + stdout.count(" wgrad ") == 161
    assert "TOTAL" in stdout and f"{cycles:,}" in stdout


def test_pipelined_array_cycles(tmp_path, capsys):
    """--acc-stages 6: the interleaved array's cycle model (padding tiles, spaced last
    beats), every GEMM equal to the breakdown of ArrayConfig(R, C, acc_stages=6); memory
    options refused with it (not modelled)."""
    from pysim.perf.arch import ArrayConfig
    data, stdout = run_json(tmp_path, capsys, "resnet50", "--rows", 16, "--cols", 16,
                            "--acc-stages", 6, "-q")
    gemms = training_step_gemms(build_model("resnet50"))
    s = gemm_arrays(gemms)
    b = breakdown(s.m, s.k, s.n, ArrayConfig(16, 16, acc_stages=6), count=s.count)
    assert data["totals"]["cycles"] == int(b.total.sum())
    assert data["array"]["acc_stages"] == 6 and "6-deep accumulator loop" in stdout
    compact, _ = expected_totals(gemms, 16, 16)
    assert compact < data["totals"]["cycles"] < 1.1 * compact    # a few % more cycles
    assert main(["cycles", "resnet50", "--rows", "4", "--cols", "4", "--acc-stages", "6",
                 "--dram-bw", "8"]) == 2
    assert "not modelled" in capsys.readouterr().err
    assert main(["cycles", "resnet50", "--rows", "4", "--cols", "4", "--acc-stages", "0"]) == 2
    assert "--acc-stages: must be an integer in 1..6" in capsys.readouterr().err


def test_bytes_and_utilization_columns(tmp_path, capsys):
    data, _ = run_json(tmp_path, capsys, DATA / "gemm_mnk.csv", "--rows", 8, "--cols", 4,
                       "--mant-bits", 8)
    row = data["gemms"][0]  # mlp_fc1: M=256, N=128, K=2048
    m, k, n = 256, 2048, 128
    elements = m * k + k * n + m * n
    assert (row["M"], row["K"], row["N"]) == (m, k, n)
    assert row["s2fp8_bytes"] == elements + 3 * 8 and row["fp32_bytes"] == 4 * elements
    b = breakdown(m, k, n, 8, 4)
    assert row["cycles"] == int(b.total)
    assert row["utilization"] == pytest.approx(m * k * n / (8 * 4 * int(b.total)))
    assert data["array"]["mant_bits"] == 8


@pytest.mark.parametrize("kind", ["csv-conv", "csv-gemm", "trace", "onnx"])
def test_each_input_kind(tmp_path, capsys, kind):
    if kind == "csv-conv":
        source, gemms = DATA / "alexnet.csv", import_scalesim(DATA / "alexnet.csv").gemms()
    elif kind == "csv-gemm":
        source, gemms = DATA / "gemm_mnk.csv", import_scalesim(DATA / "gemm_mnk.csv").gemms()
    elif kind == "trace":
        trace = trace_from_layers("ncf", build_model("ncf"), PHASES)
        source = tmp_path / "ncf.json"
        save_trace(trace, source)
        gemms = trace.gemms()
    else:
        from onnx import TensorProto, helper, numpy_helper
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"], name="proj"),
             helper.make_node("Softmax", ["y"], ["s"], name="sm"),
             helper.make_node("MatMul", ["s", "s2"], ["z"], name="bmm")], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, 10, 16]),
             helper.make_tensor_value_info("s2", TensorProto.FLOAT, [3, 8, 5])],
            [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(np.zeros((16, 8), np.float32), "w")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        source = tmp_path / "m.onnx"
        onnx.save(model, str(source))
        from pysim.workload.importers import import_file
        gemms = import_file(source, batch=2).gemms()
        assert [(g.m, g.k, g.n, g.count) for g in gemms] == [(60, 16, 8, 1), (10, 8, 5, 6)]
    extra = ["--batch", "2"] if kind == "onnx" else []
    data, stdout = run_json(tmp_path, capsys, source, "--rows", 16, "--cols", 8, *extra)
    cycles, macs = expected_totals(gemms, 16, 8)
    assert (data["totals"]["cycles"], data["totals"]["MACs"]) == (cycles, macs)
    assert [(r["layer"], r["phase"], r["M"], r["K"], r["N"]) for r in data["gemms"]] == \
        [(g.layer, g.phase, g.m, g.k, g.n) for g in gemms]
    if kind == "onnx":
        assert data["unsupported"] == [{"node": "sm", "op_type": "Softmax"}]
        assert "1 Softmax node(s) not simulated (not a GEMM layer): sm" in run_json.stderr
    else:
        assert run_json.stderr == ""


def test_onnx_unsupported_warning_on_stderr(tmp_path, capsys):
    from onnx import TensorProto, helper, numpy_helper
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc"),
         helper.make_node("LayerNormalization", ["y", "g"], ["z"], name="ln")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.zeros((6, 3), np.float32), "w"),
         numpy_helper.from_array(np.ones((3,), np.float32), "g")])
    path = tmp_path / "ln.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert main(["cycles", str(path), "--rows", "4", "--cols", "4", "-q"]) == 0
    captured = capsys.readouterr()
    assert "warning" in captured.err and "LayerNormalization" in captured.err and "ln" in captured.err
    assert "TOTAL" not in captured.out and "total:" in captured.out


def test_csv_json_plot_files(tmp_path, capsys):
    files = {k: tmp_path / f"r.{k}" for k in ("csv", "json", "png")}
    assert main(["cycles", "transformer-tiny", "--rows", "16", "--cols", "16", "--quiet",
                 "--csv", str(files["csv"]), "--json", str(files["json"]),
                 "--plot", str(files["png"])]) == 0
    out = capsys.readouterr().out
    assert "TOTAL" not in out and "total:" in out
    rows = list(csv.DictReader(files["csv"].open()))
    gemms = training_step_gemms(build_model("transformer-tiny"))
    assert len(rows) == len(gemms) + 1 and rows[-1]["layer"] == "TOTAL"
    cycles, macs = expected_totals(gemms, 16, 16)
    assert int(rows[-1]["cycles"]) == cycles and int(rows[-1]["MACs"]) == macs
    assert sum(int(r["cycles"]) for r in rows[:-1]) == cycles
    assert json.loads(files["json"].read_text())["totals"]["cycles"] == cycles
    png = files["png"].read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.json", "r.png"]


@pytest.mark.parametrize("args, message", [
    (["ncf", "--rows", "0", "--cols", "4"], "--rows: must be an integer in 1..64, got 0"),
    (["ncf", "--rows", "4", "--cols", "65"], "--cols: must be an integer in 1..64, got 65"),
    (["ncf", "--rows", "x", "--cols", "4"], "--rows: must be an integer in 1..64, got 'x'"),
    (["ncf", "--rows", "4", "--cols", "4", "-W", "25"], "--mant-bits: must be an integer in 1..24"),
    (["vgg", "--rows", "4", "--cols", "4"], "vgg: no such file, and not a built-in model"),
    (["missing.csv", "--rows", "4", "--cols", "4"], "missing.csv: no such file"),
    (["ncf", "--rows", "4", "--cols", "4", "--plot", "x.jpg"], "--plot: the file name must end in .png"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["cycles", *args, "--csv", "out.csv"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("s2fp8 cycles: error: ") and message in err
    assert list(tmp_path.iterdir()) == []


def test_no_partial_files_when_one_output_fails(tmp_path, capsys):
    out_csv = tmp_path / "r.csv"
    assert main(["cycles", "ncf", "--rows", "4", "--cols", "4", "--csv", str(out_csv),
                 "--plot", str(tmp_path / "nodir" / "r.png")]) == 2
    err = capsys.readouterr().err
    assert "nodir" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_no_partial_files_on_bad_trace(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "s2fp8-trace", "version": 1, "model": "m", "layers": '
                   '[{"name": "fc", "op": "linear", "batch": 0, "in_features": 2, '
                   '"out_features": 2}]}')
    assert main(["cycles", str(bad), "--rows", "4", "--cols", "4",
                 "--csv", str(tmp_path / "r.csv"), "--json", str(tmp_path / "r.json")]) == 2
    assert "layer 0 'fc': field 'batch'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


def test_existing_output_untouched_on_error(tmp_path, capsys):
    out = tmp_path / "r.csv"
    out.write_text("old\n")
    assert main(["cycles", "ncf", "--rows", "4", "--cols", "4", "--csv", str(out),
                 "--json", str(tmp_path / "missing" / "r.json")]) == 2
    assert out.read_text() == "old\n"


def test_help_epilog_documents_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["cycles", "--help"])
    out = capsys.readouterr().out
    assert "exit codes" in out and "2  bad input" in out
    with pytest.raises(SystemExit):
        main(["trace", "import", "--help"])
    assert "exit codes" in capsys.readouterr().out


def test_cycle_report_matches_breakdown_directly():
    gemms = training_step_gemms(build_model("ncf"))
    report = cycle_report(gemms, 7, 9)
    cycles, macs = expected_totals(gemms, 7, 9)
    assert report.total_cycles == cycles and report.total_macs == macs


def test_output_is_a_directory_and_empty_trace(tmp_path, capsys):
    (tmp_path / "d.csv").mkdir()
    assert main(["cycles", "ncf", "--rows", "4", "--cols", "4", "--json",
                 str(tmp_path / "r.json"), "--csv", str(tmp_path / "d.csv")]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
    empty = tmp_path / "e.json"
    empty.write_text('{"format": "s2fp8-trace", "version": 1, "model": "m", "layers": '
                     '[{"name": "fc", "op": "linear", "batch": 1, "in_features": 2, '
                     '"out_features": 2, "phase": "dgrad", "needs_input_grad": false}]}')
    assert main(["cycles", str(empty), "--rows", "4", "--cols", "4"]) == 2
    assert "no GEMM to run" in capsys.readouterr().err


def test_k_beyond_the_array_port_names_the_layer(tmp_path, capsys):
    """K of 2^32 or more does not fit the RTL's 32-bit k port: exit 2 naming the layer."""
    path = tmp_path / "big_k.csv"
    path.write_text("Layer, M, N, K,\nsmall,4,4,4,\nbig,4,4,5000000000,\n")
    assert main(["cycles", str(path), "--rows", "4", "--cols", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "layer 'big' (forward)" in err and "K must be <= 4294967295" in err
