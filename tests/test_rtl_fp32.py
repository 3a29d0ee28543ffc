"""The bench harness's self-test on a stand-in, the Verilog generation (deterministic,
rtl_out/ up to date), lint and the one-line errors of ``s2fp8 verilog``/``regress``.
(The FP32 multiplier and adder checks run from tests/test_rtl_registry.py.)
"""
from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hw import verilog
from hw.tb import sim
from hw.tb.scoreboard import check_stream
from pysim.files import atomic_write

RTL_OUT = verilog.REPO_ROOT / "rtl_out"


@pytest.mark.parametrize("public_api", [False, True], ids=["fast_io", "public_api"])
def test_harness_selftest(tmp_path_factory, monkeypatch, rtl_build, public_api, seed):
    """The driver/monitor/scoreboard on a stand-in (a XOR b, 2-cycle pipeline): exact
    timing is measured, and the scoreboard catches wrong latency, wrong values, lost results.
    Both signal-access paths of the harness (raw GPI and cocotb's handle.value)."""
    monkeypatch.setenv("S2FP8_TB_PUBLIC_API", "1" if public_api else "0")
    from amaranth.back import verilog as amaranth_verilog
    from hw.tb.standin import XorPipe
    source = tmp_path_factory.mktemp("standin") / "xor_pipe_l2.v"
    atomic_write(source, amaranth_verilog.convert(XorPipe(2), name="xor_pipe_l2"))
    built = sim.build("xor_pipe_l2", source)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 << 32, 3000, dtype=np.uint64).astype(np.uint32)
    b = rng.integers(0, 1 << 32, 3000, dtype=np.uint64).astype(np.uint32)
    got = sim.run(built, "hw.tb.bench_binop", {"a": a, "b": b}, seed=seed,
                  params={"latency": 2, "idle_prob": 0.3}).results
    kwargs = dict(inputs={"a": a, "b": b}, out_cycle=got["out_cycle"],
                  out_value=got["out_result"], in_cycle=got["in_cycle"])
    assert np.any(np.diff(got["in_cycle"]) > 1), "no idle gaps were driven"
    good = check_stream("standin", expected=a ^ b, latency=2, **kwargs)
    assert good.ok, good.errors
    late = check_stream("standin", expected=a ^ b, latency=3, **kwargs)
    assert not late.ok and "timing" in late.errors[0]
    wrong = (a ^ b).copy()
    wrong[[5, 17]] ^= 1
    bad = check_stream("standin", expected=wrong, latency=2, **kwargs)
    assert bad.mismatches == 2 and bad.first_mismatch.startswith("#5:")
    lost = check_stream("standin", expected=a ^ b, latency=2, **{
        **kwargs, "out_cycle": got["out_cycle"][:-1], "out_value": got["out_result"][:-1]})
    assert not lost.ok and "results for" in lost.errors[0]


def _generate_cli(out_dir: Path, hash_seed: str) -> None:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    done = subprocess.run([sys.executable, "-m", "pysim.cli", "verilog", "-o", str(out_dir)],
                          capture_output=True, text=True, env=env, cwd=verilog.REPO_ROOT)
    assert done.returncode == 0, done.stderr


def _same_tree(left: Path, right: Path) -> list[str]:
    names = sorted({p.name for p in left.iterdir()} | {p.name for p in right.iterdir()})
    return [name for name in names
            if not ((left / name).is_file() and (right / name).is_file()
                    and filecmp.cmp(left / name, right / name, shallow=False))]


def test_verilog_byte_identical_on_rerun(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    _generate_cli(first, "1")
    _generate_cli(second, "2")
    assert _same_tree(first, second) == []
    names = sorted(p.name for p in first.glob("*.v"))
    assert names == sorted(f"{name}.v" for name in verilog.module_names())
    for path in first.glob("*.v"):
        text = path.read_text()
        assert str(verilog.REPO_ROOT) not in text and "site-packages" not in text
        assert f"module {path.stem}(" in text


def test_rtl_out_matches_fresh_generation(tmp_path):
    assert RTL_OUT.is_dir(), "rtl_out/ missing: run `s2fp8 verilog`"
    _generate_cli(tmp_path, "0")
    differ = _same_tree(tmp_path, RTL_OUT)
    assert differ == [], f"rtl_out/ is stale ({differ}): run `s2fp8 verilog`"


def test_lint_clean(tmp_path):
    paths = verilog.generate(verilog.DEFAULT_MANT_BITS, tmp_path)
    clean, output = verilog.lint(paths)
    assert clean, output


@pytest.mark.parametrize("argv, message", [
    (["verilog", "--mant-bits", "0"], "mant_bits must be in 1..24"),
    (["verilog", "-W", "25"], "mant_bits must be in 1..24"),
    (["regress", "--only", "nope"], "unknown check"),
])
def test_bad_input_one_line(argv, message, capsys):
    from pysim.cli import main
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
