"""``s2fp8 demo``: the README's main command runs on its built-in defaults, prints both
reports and writes both plots."""
from pysim.cli import main


def test_demo_prints_reports_and_writes_plots(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    assert main(["demo", "--out-dir", str(out_dir), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "ResNet-50 training step" in text and "161 GEMMs on a 16x16 array" in text
    assert "S2FP8" in text and "E5M2" in text and "E4M3" in text
    for name in ("resnet50_cycles.png", "digits_accuracy.png"):
        assert (out_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_rejects_a_file_as_out_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["demo", "--out-dir", str(blocker)]) == 2
    assert "not a directory" in capsys.readouterr().err
