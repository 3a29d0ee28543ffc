"""Reliability (issue 9): no silent wrong number, every bad input exit 2, output files
all-or-nothing. Each test here failed on the tree before its fix."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pysim.numerics.formats import E5M2, S2FP8_TARGET_MAX_LOG2
from pysim.numerics.s2fp8 import (
    S2FP8Tensor,
    decode,
    encode,
    squeeze_shift,
    stats,
)

# --------------------------------------------------------- item 2: nearly constant tensors

#: log2 of E5M2's smallest subnormal: a squeezed magnitude at or above it is in range.
E5M2_MIN_LOG2 = -(E5M2.bias + E5M2.frac_bits - 1)


def test_nearly_constant_pair_keeps_both_values():
    """Before: alpha = 3e8, beta = -5e8 (a float32 step of 32 there) -> [0, 3.0000002]."""
    x = np.array([3.0, 3.0000002], np.float32)
    t = encode(x)
    assert np.all(t.codes != 0), (t.alpha, t.beta, t.codes)
    assert np.allclose(decode(t), x, rtol=1e-6)


def test_nearly_constant_gradients_keep_every_value():
    """Before: 252 of 1000 values of 0.01 * (1 + 1e-7 N(0, 1)) decoded to zero."""
    rng = np.random.default_rng(0)
    x = (0.01 * (1 + 1e-7 * rng.standard_normal(1000))).astype(np.float32)
    t = encode(x)
    assert np.count_nonzero(t.codes == 0) == 0
    assert np.allclose(decode(t), x, rtol=1e-5)


def _in_range_after_squeeze(x: np.ndarray) -> bool:
    """Every nonzero magnitude, through the exact (float64) squeeze of squeeze_shift,
    lands at or above E5M2's smallest subnormal."""
    mu, m, alpha, beta = stats(x)
    l2 = np.log2(np.abs(x[x != 0]).astype(np.float64))
    return bool(np.all(alpha * l2 + beta >= E5M2_MIN_LOG2))


@st.composite
def nearly_constant(draw):
    """A base magnitude times (1 + tiny relative perturbations): the tensors whose
    spread m - mu is at or below float32's resolution of the statistics."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    base_log2 = draw(st.floats(-120, 120))
    n = draw(st.integers(2, 64))
    rel = draw(st.floats(1e-16, 1e-3))
    noise = draw(st.lists(st.floats(-4, 4), min_size=n, max_size=n))
    signs = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    x = np.exp2(base_log2) * (1 + rel * np.array(noise))
    return np.where(signs, -x, x).astype(dtype)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(nearly_constant())
@example(np.array([3.0, 3.0000002], np.float32))
@example(np.array([2.0 ** 100 * (1 + 2.0 ** -40)] * 9 + [2.0 ** 100]))
def test_no_in_range_value_lost_to_zero(x):
    if not _in_range_after_squeeze(x):
        return
    t = encode(x)
    lost = (t.codes & E5M2.magnitude_mask) == 0
    assert not lost[x != 0].any(), (x, t.alpha, t.beta)
    scaled_max = math.log2(float(np.abs(decode_stored_magnitudes(t)).max()))
    # the stored map moves the maximum by at most the storage error (no saturation)
    assert scaled_max <= S2FP8_TARGET_MAX_LOG2 + 0.5


def decode_stored_magnitudes(t: S2FP8Tensor) -> np.ndarray:
    """The E5M2 values the codes hold (the squeezed magnitudes, not the decoded x)."""
    from pysim.numerics.fp8 import E5M2_VALUES
    return E5M2_VALUES[t.codes & E5M2.magnitude_mask]


def test_squeeze_shift_degenerate_cases():
    assert squeeze_shift(float("nan"), float("nan")) == (1.0, 0.0)
    assert squeeze_shift(-3.5, -3.5) == (1.0, 3.5)
    alpha, beta = squeeze_shift(1.0, 2.0)
    assert (alpha, beta) == (15.0, -15.0)
    # a spread below float32's resolution of beta: alpha capped, mean still maps to 0
    alpha, beta = squeeze_shift(100.0, 100.0 + 1e-12)
    assert 0 < alpha < 15 / 1e-12 and beta == -alpha * 100.0
    # the rounded mean at or above the max: the equal-magnitude case, never alpha <= 0
    alpha, beta = squeeze_shift(100.0 + 1e-13, 100.0)
    assert alpha > 0 and math.isfinite(beta)


# ------------------------------------------------- item 5: statistics checked as float32

@pytest.mark.parametrize("alpha,beta", [(1e-46, 0.0), (1.0, 1e39), (1.0, -1e39), (1e39, 0.0)])
def test_tensor_statistics_checked_after_float32_conversion(alpha, beta):
    """Before: alpha 1e-46 was stored as 0.0 and beta 1e39 as inf."""
    with pytest.raises(ValueError, match="alpha|beta"):
        S2FP8Tensor(np.zeros(3, np.uint8), alpha=alpha, beta=beta)


# ------------------------------------------------- item 4: SCALE-Sim's conv output size

DATA = __import__("pathlib").Path(__file__).parent / "data"


def _scalesim_reference(ih, iw, fh, fw, ch, nf, sh, sw):
    """SCALE-Sim's topology_utils.topo_calc_hyperparams, restated: (M, K, N)."""
    oh = math.ceil((ih - fh + sh) / sh)
    ow = math.ceil((iw - fw + sw) / sw)
    return oh * ow, fh * fw * ch, nf


def test_scalesim_mobilenet_conv1_has_scalesim_shape():
    """Before: 226 x 226, 3x3 stride 2 gave 112 x 112 = 12,544 rows; SCALE-Sim 12,769."""
    from pysim.workload.importers.scalesim import import_scalesim
    g = import_scalesim(DATA / "mobilenet_dw.csv").gemms()[0]
    assert (g.m, g.k, g.n) == (113 * 113, 27, 32)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 9), st.integers(1, 9),
       st.integers(1, 6), st.integers(1, 6))
def test_scalesim_conv_rows_match_scalesim_formula(tmp_path_factory, ih, iw, fh, fw, sh, sw):
    from pysim.workload.importers.scalesim import import_scalesim
    fh, fw = min(fh, ih), min(fw, iw)
    path = tmp_path_factory.mktemp("scalesim") / "net.csv"
    path.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                    "Channels, Num Filter, Stride height, Stride width,\n"
                    f"c, {ih}, {iw}, {fh}, {fw}, 3, 5, {sh}, {sw},\n")
    g = import_scalesim(path).gemms()[0]
    assert (g.m, g.k, g.n) == _scalesim_reference(ih, iw, fh, fw, 3, 5, sh, sw)


# ------------------------------------------------------- item 7: bad input is exit 2

import subprocess  # noqa: E402
import sys  # noqa: E402

from pysim.cli import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, main  # noqa: E402
from pysim.errors import BadInput  # noqa: E402

GEMM_HEADER = "Layer, M, N, K,\n"
TWO_63 = str(1 << 63)
DIGITS_5000 = "9" * 5000


def _trace_json(batch: str) -> str:
    return ('{"format": "s2fp8-trace", "version": 1, "model": "m", "layers": '
            '[{"name": "fc", "op": "linear", "batch": ' + batch
            + ', "in_features": 4, "out_features": 4}]}')


def _bad_exit(capsys, argv) -> str:
    """Run the CLI; assert exit 2 with one line on stderr; return that line."""
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err, err
    return err


BAD_FILES = {
    "deep.json": "[" * 100_000 + "]" * 100_000,
    "big.csv": GEMM_HEADER + f"f, {TWO_63}, 4, 4,\n",
    "huge.csv": GEMM_HEADER + f"f, {DIGITS_5000}, 4, 4,\n",
    "big.json": _trace_json(TWO_63),
    "huge.json": _trace_json(DIGITS_5000),
    "arabic.csv": GEMM_HEADER + "f, \u0663, 4, 4,\n",        # item 8: '٣'
    "fullwidth.csv": GEMM_HEADER + "f, 4, \uff14, 4,\n",     # item 8: '４'
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_numbers_and_nesting_are_bad_input(tmp_path, capsys, name):
    path = tmp_path / name
    path.write_text(BAD_FILES[name], encoding="utf-8")
    err = _bad_exit(capsys, ["cycles", str(path), "--rows", "4", "--cols", "4", "-q"])
    assert name in err


@pytest.mark.parametrize("option", ["--rows", "--cols", "--mant-bits", "--batch"])
@pytest.mark.parametrize("value", [TWO_63, DIGITS_5000, "\u0663"])
def test_bad_integer_options_are_bad_input(tmp_path, capsys, option, value):
    csv = tmp_path / "conv.csv"
    csv.write_text((DATA / "alexnet.csv").read_text())
    argv = {"--rows": "4", "--cols": "4", "--mant-bits": "8", "--batch": "1"}
    argv[option] = value
    err = _bad_exit(capsys, ["cycles", str(csv), "-q"]
                    + [a for kv in argv.items() for a in kv])
    assert option in err


def _npz_bytes() -> bytes:
    import io
    buffer = io.BytesIO()
    np.savez(buffer, table_a=np.zeros(128, np.uint32))
    return buffer.getvalue()


@pytest.mark.parametrize("name,content", [
    ("empty.npz", b""),
    ("truncated.npz", _npz_bytes()[:200]),
    ("array.npy", None),
])
def test_unreadable_vector_files_are_bad_input(tmp_path, capsys, name, content):
    """Before: EOFError / BadZipFile (exit 1); a .npy blamed --mant-bits."""
    path = tmp_path / name
    if content is None:
        np.save(path, np.zeros(3))  # one array, not an archive
    else:
        path.write_bytes(content)
    err = _bad_exit(capsys, ["regress", "--vectors", str(path)])
    assert "--vectors" in err and name in err and "--mant-bits" not in err


def test_demo_out_dir_that_cannot_be_created_is_bad_input(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    err = _bad_exit(capsys, ["demo", "--out-dir", str(blocker / "sub")])
    assert "--out-dir" in err


def test_closed_stdout_pipe_exits_quietly(tmp_path):
    """``s2fp8 cycles ... | head -1``: before, a BrokenPipeError 'internal error'."""
    csv = tmp_path / "many.csv"
    csv.write_text(GEMM_HEADER + "".join(f"l{i}, 64, 64, 64,\n" for i in range(5000)))
    # --csv: the table is one write (the kernel returns a short count for it, no
    # error); the "wrote" line after it is the write that meets the closed pipe
    proc = subprocess.Popen([sys.executable, "-m", "pysim.cli", "cycles", str(csv),
                             "--rows", "4", "--cols", "4", "--csv", str(tmp_path / "o.csv")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away with ~700 KB still to come
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == EXIT_BROKEN_PIPE and err == "", err


# ---------------------------------------------- item 8: --batch that would be ignored

@pytest.mark.parametrize("spec", ["resnet50", "gemm_mnk.csv", "trace.json"])
def test_batch_for_an_input_with_a_fixed_batch_is_refused(tmp_path, capsys, spec):
    if spec.endswith(".csv"):
        spec = str(DATA / spec)
    elif spec.endswith(".json"):
        (tmp_path / spec).write_text(_trace_json("2"))
        spec = str(tmp_path / spec)
    err = _bad_exit(capsys, ["cycles", spec, "--rows", "4", "--cols", "4", "--batch", "3"])
    assert "batch" in err


# ------------------------------------------------ item 9: report time linear in GEMMs

def test_report_rows_read_each_breakdown_array_once():
    """Before: rows_as_dicts evaluated ``cycles.total`` (a sum of four arrays) once per
    row, so a 100k-GEMM report did 10^10 additions. Counted, not timed."""
    from pysim.perf.gemm import Gemm
    from pysim.perf.report import cycle_report

    gemms = [Gemm(f"l{i}", "forward", 8 + i, 16, 4, 1) for i in range(50)]
    report = cycle_report(gemms, 4, 4)
    reads = {"total": 0}
    breakdown_type = type(report.cycles)

    class CountingBreakdown(breakdown_type):
        @property
        def total(self):
            reads["total"] += 1
            return breakdown_type.total.fget(self)

    report.cycles = CountingBreakdown(*report.cycles)
    rows = report.rows_as_dicts()
    assert len(rows) == 50 and reads["total"] <= 2, reads
    assert [r["cycles"] for r in rows] == breakdown_type.total.fget(report.cycles).tolist()


# ------------------------------------------- item 10: interrupted `s2fp8 verilog`

def test_interrupted_verilog_leaves_no_partial_set(tmp_path, monkeypatch, capsys):
    """Before: the files written before Ctrl-C stayed in --out-dir (a partial set)."""
    import pysim.cli.verilog as cli_verilog
    real_generate = cli_verilog.generate
    seen = []

    def interrupted(widths, out_dir, on_written=None):
        def progress(path):
            seen.append(path)
            if len(seen) == 2:
                raise KeyboardInterrupt
        return real_generate(widths, out_dir, on_written=progress)

    monkeypatch.setattr(cli_verilog, "generate", interrupted)
    out = tmp_path / "rtl"
    assert main(["verilog", "-W", "8", "-o", str(out)]) == 130
    assert len(seen) == 2 and list(out.iterdir()) == []  # no file, no staging directory


# --------------------------------------------- item 6: output files all-or-nothing

import os  # noqa: E402
import stat  # noqa: E402

CYCLES = ["cycles", "ncf", "--rows", "4", "--cols", "4", "-q"]


def test_failed_rename_puts_back_the_files_already_replaced(tmp_path, monkeypatch, capsys):
    """Before: `cycles --csv a.csv --json B`, B not replaceable, left a new a.csv."""
    import pysim.files
    old_csv, new_csv = tmp_path / "old.csv", tmp_path / "new.csv"
    old_csv.write_text("previous\n")
    blocked = tmp_path / "b.json"
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst) == blocked:
            raise PermissionError(1, "Operation not permitted")
        return real_replace(src, dst)

    monkeypatch.setattr(pysim.files.os, "replace", replace)
    _bad_exit(capsys, CYCLES + ["--csv", str(old_csv), "--json", str(blocked)])
    _bad_exit(capsys, CYCLES + ["--csv", str(new_csv), "--json", str(blocked)])
    assert old_csv.read_text() == "previous\n" and not new_csv.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.csv"]  # no temp, no backup


def test_output_over_an_input_is_refused(tmp_path, capsys):
    """Before: `cycles net.csv --csv net.csv` replaced the input with the report."""
    net = tmp_path / "net.csv"
    net.write_text((DATA / "gemm_mnk.csv").read_text())
    before = net.read_text()
    err = _bad_exit(capsys, ["cycles", str(net), "--rows", "4", "--cols", "4",
                             "--csv", str(net)])
    assert "input" in err and net.read_text() == before


def test_device_nodes_are_written_through_never_replaced(tmp_path, capsys):
    """Before: as root, `--csv /dev/full` turned the device into a regular file."""
    full, null = tmp_path / "full", tmp_path / "null"
    os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))   # what /dev/full is
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))   # what /dev/null is
    csv = tmp_path / "a.csv"
    err = _bad_exit(capsys, CYCLES + ["--csv", str(csv), "--json", str(full)])
    assert "No space left" in err and not csv.exists()
    assert main(CYCLES + ["--csv", str(null)]) == 0
    assert stat.S_ISCHR(os.stat(full).st_mode) and stat.S_ISCHR(os.stat(null).st_mode)


def test_symlink_target_replaced_link_and_mode_kept(tmp_path, capsys):
    """Before: the link was replaced by a regular file, and modes reset to 0644."""
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    os.chmod(real, 0o600)
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    assert main(CYCLES + ["--csv", str(link)]) == 0
    assert link.is_symlink() and real.read_text().startswith("layer,")
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o600
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "missing" / "x.csv")
    _bad_exit(capsys, CYCLES + ["--csv", str(dangling)])


# ---------------------------- item 8: accuracy with float64 tensors beyond FP32's range

def test_accuracy_reports_fp32_overflow_without_warnings(tmp_path, capsys):
    """Before: 'RuntimeWarning: overflow encountered in cast' leaked to stderr (and with
    warnings as errors the command failed); now the overflow is counted in the table."""
    import warnings
    np.save(tmp_path / "a.npy", np.array([[1e39, 2.0], [3.0, -1e300]]))
    np.save(tmp_path / "b.npy", np.array([[1.0, 2.0], [3.0, 4.0]]))
    (tmp_path / "t.json").write_text(
        '{"format": "s2fp8-trace", "version": 1, "model": "m", "layers": [{"name": "fc", '
        '"op": "linear", "batch": 2, "in_features": 2, "out_features": 2, '
        '"tensors": {"forward": {"a": "a.npy", "b": "b.npy"}}}]}')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["accuracy", str(tmp_path / "t.json"), "-q"]) == 0
    out, err = capsys.readouterr()
    assert "Warning" not in err
    fp32_row = next(line for line in out.splitlines() if line.startswith("FP32 "))
    assert fp32_row.split()[-1] == "2", fp32_row          # overflow column: 2 inputs
    assert "beyond the FP32 range" in out


def test_capture_pair_json_and_npz_all_or_nothing(tmp_path, monkeypatch):
    """`trace capture -o d.json --tensors` writes d.npz and d.json with one
    atomic_write_many (pysim.workload.capture.output): before, a failing d.json rename
    left d.npz behind. Also: the same file twice is refused."""
    import pysim.files
    npz, trace_json = tmp_path / "d.npz", tmp_path / "d.json"
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst) == trace_json:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(pysim.files.os, "replace", replace)
    with pytest.raises(BadInput, match="d.json"):
        pysim.files.atomic_write_many({npz: b"tensors", trace_json: "{}"})
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(pysim.files.os, "replace", real_replace)
    with pytest.raises(BadInput, match="given twice"):
        pysim.files.atomic_write_many({npz: b"a", str(tmp_path / "." / "d.npz"): b"b"})
    assert list(tmp_path.iterdir()) == []
