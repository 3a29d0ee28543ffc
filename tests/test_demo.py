"""``s2fp8 demo``: the README's main command runs on its built-in defaults, prints the
three reports (cycles, formats side by side under a memory system, accuracy) and writes
the three plots."""
import struct

from pysim.cli import main
from pysim.cli.demo import DEFAULT_COLS, DEFAULT_MODEL, DEFAULT_ROWS, DEMO_FORMATS
from pysim.perf.accel import Accelerator
from pysim.perf.memory import memory_report
from pysim.workload.models import build_model, training_step_gemms

PLOTS = ("resnet50_cycles.png", "resnet50_roofline.png", "digits_accuracy.png")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])       # the IHDR chunk: width, height


def test_demo_prints_reports_and_writes_plots(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    assert main(["demo", "--out-dir", str(out_dir), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "ResNet-50 training step" in text and "161 GEMMs on a 16x16 array" in text
    assert "S2FP8" in text and "E5M2" in text and "E4M3" in text
    # formats side by side: the assumed accelerator, then one row per format whose
    # cycles, stalls, DRAM MB and energy are the memory model's totals
    acc = Accelerator(rows=DEFAULT_ROWS, cols=DEFAULT_COLS)
    assert f"memory model: {acc.summary()}" in text
    report = memory_report(training_step_gemms(build_model(DEFAULT_MODEL)), acc, DEMO_FORMATS)
    rows = {line.split()[0]: line.split() for line in text.splitlines()
            if line.split() and line.split()[0] in DEMO_FORMATS}
    assert list(rows) == list(DEMO_FORMATS)
    for name, result in report.formats.items():
        t = result.total()
        assert rows[name][1:3] == [f"{t['cycles']:,}", f"{t['stall_cycles']:,}"]
        assert rows[name][4] == f"{t['dram_read_bytes'] / 1e6:,.2f}"
        assert rows[name][6] == f"{t['energy_pj'] / 1e9:,.2f}"
    totals = [report.formats[name].total() for name in DEMO_FORMATS]
    assert totals[0]["stall_cycles"] < totals[1]["stall_cycles"] < totals[2]["stall_cycles"]
    for name in PLOTS:
        width, height = png_size((out_dir / name).read_bytes())
        assert 600 <= width <= 2000 and 400 <= height <= 2000, (name, width, height)


def test_demo_rejects_a_file_as_out_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["demo", "--out-dir", str(blocker)]) == 2
    assert "not a directory" in capsys.readouterr().err
