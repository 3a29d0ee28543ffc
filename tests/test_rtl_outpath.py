"""The output-path regression's own parts (its random check, ``outpath_random_c4``, runs
from tests/test_rtl_registry.py):

- the random-tensor generator really makes the hard cases it claims;
- ``s2fp8 regress --tensors FILE.npz [-o OUT.npz]``: a user's tensors through the RTL
  output path (cocotb under Verilator, s2fp8_outpath_c4, build cached in sim_build/):
  exit 0 and the RTL's codes/alpha/beta written, a difference reported decoded with
  exit 1, a malformed file refused in one line with exit 2 before anything is built.
"""
import zipfile

import numpy as np
import pytest

from hw.tb import outpath_checks
from pysim.cli import main
from pysim.numerics import outpath


def test_random_tensors_cover_the_hard_cases(seed):
    tensors = outpath_checks.random_tensors(60, np.random.default_rng(seed))
    stats = [outpath.statistics(t) for t in tensors]
    bits = np.concatenate(tensors)
    assert any(s.count == 0 for s in stats)                               # all zeros
    assert any(s.nonfinite for s in stats)                                # Inf/NaN
    assert any(s.count and s.min_magnitude == s.max_magnitude for s in stats)  # constant
    assert np.any((bits & 0x7F800000) == 0) and np.any((bits & 0x7FFFFFFF) != 0)
    subnormal = ((bits & 0x7F800000) == 0) & ((bits & 0x7FFFFF) != 0)
    assert subnormal.sum() > 100
    alphas = [outpath.scalar_step(s)[0] for s in stats]
    assert max(alphas) > 100 and min(alphas) < 0.5                        # near-constant, wide


def _tensor_file(path, rng):
    """Three tensors of 50 values (not a multiple of the 4 lanes: the last beat is
    padded), one with zeros, one scaled into the subnormals."""
    x = (rng.standard_normal((3, 50)) * [[1e-3], [1.0], [2.0 ** -130]]).astype(np.float32)
    x[1, ::4] = 0
    np.savez(path, x=x)
    return x


def test_cli_tensors_pass_and_write_what_the_rtl_produced(rtl_build, tmp_path, seed, capsys):
    rtl_build(outpath_checks.TOP)
    x = _tensor_file(tmp_path / "t.npz", np.random.default_rng(seed))
    out = tmp_path / "o.npz"
    assert main(["regress", "--tensors", str(tmp_path / "t.npz"), "-o", str(out),
                 "--seed", str(seed)]) == 0
    assert "tensors" in capsys.readouterr().out
    with np.load(out) as written:
        assert sorted(written.files) == ["alpha", "beta", "codes"]
        codes, alpha, beta = written["codes"], written["alpha"], written["beta"]
    assert codes.dtype == np.uint8 and codes.shape == x.shape
    assert alpha.dtype == beta.dtype == np.float32 and alpha.shape == beta.shape == (3,)
    for s in range(3):
        expect = outpath.encode_hw(x[s])
        assert np.array_equal(codes[s], expect.codes)
        assert (alpha[s], beta[s]) == (expect.alpha, expect.beta)
    assert not [p.name for p in tmp_path.iterdir() if p.name not in ("t.npz", "o.npz")]


def test_cli_tensors_difference_is_decoded(rtl_build, tmp_path, seed, capsys, monkeypatch):
    """A wrong expectation (one code flipped in the golden) is exit 1, reported with the
    tensor, the value (hex and decimal) and both codes."""
    rtl_build(outpath_checks.TOP)
    x = _tensor_file(tmp_path / "t.npz", np.random.default_rng(seed))
    real = outpath_checks.expected_output

    def off_by_one(bits):
        stats, alpha, beta, codes = real(bits)
        codes = codes.copy()
        codes[7] ^= 1
        return stats, alpha, beta, codes

    monkeypatch.setattr(outpath_checks, "expected_output", off_by_one)
    assert main(["regress", "--tensors", str(tmp_path / "t.npz"), "--seed", str(seed)]) == 1
    out = capsys.readouterr().out
    expect = outpath.encode_hw(x[0]).codes[7]
    bits = int(x[0, 7:8].view(np.uint32)[0])
    assert (f"first failure: tensor 0, value 7: {bits:#010x} ({x[0, 7]:.9g}) expected code "
            f"{expect ^ 1:#04x}, got {expect:#04x} (1 codes differ)") in out


def _damaged(path):
    """A zip whose member x.npy is cut short: passes the zip check, fails on reading."""
    np.savez(path, x=np.ones((4, 400), np.float32))
    with zipfile.ZipFile(path) as z:
        member = z.read("x.npy")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", member[:200])


@pytest.mark.parametrize("arrays, message", [
    ({"y": np.zeros((2, 3), np.float32)}, "array 'x' is missing"),
    ({"x": np.zeros((2, 3), np.float32), "z": np.zeros(1)}, "unexpected array 'z'"),
    ({"x": np.zeros((2, 3))}, "array 'x' has dtype float64, expected float32"),
    ({"x": np.zeros(3, np.float32)}, "array 'x' has shape [3], expected [S, L]"),
    ({"x": np.zeros((2, 0), np.float32)}, "array 'x' has shape [2, 0]"),
    ({"x": np.float32([[1, 2], [3, np.inf]])}, "x[1, 1] is inf: NaN/Inf cannot be encoded"),
    ({"x": np.float32([[np.nan, 2]])}, "x[0, 0] is nan: NaN/Inf cannot be encoded"),
    ("empty", "not a .npz file"),
    ("npy", "not a .npz file"),
    ("text", "not a .npz file"),
    ("damaged", "not a readable .npz file"),
    ("missing", "no such file"),
])
def test_cli_bad_tensor_file_is_exit_2_in_one_line(tmp_path, capsys, arrays, message):
    path = tmp_path / "bad.npz"
    if arrays == "empty":
        path.write_bytes(b"")
    elif arrays == "npy":
        with open(path, "wb") as handle:
            np.save(handle, np.zeros((2, 3), np.float32))
    elif arrays == "text":
        path.write_text("x = [[1, 2]]\n")
    elif arrays == "damaged":
        _damaged(path)
    elif arrays != "missing":
        np.savez(path, **arrays)
    out = tmp_path / "o.npz"
    assert main(["regress", "--tensors", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and str(path) in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_cli_out_refused_before_the_run(tmp_path, capsys, monkeypatch):
    def no_run(*args, **kwargs):
        raise AssertionError("the RTL ran before the output path was checked")

    monkeypatch.setattr(outpath_checks, "run_tensor_file", no_run)
    _tensor_file(tmp_path / "t.npz", np.random.default_rng(0))
    assert main(["regress", "--tensors", str(tmp_path / "t.npz"), "-o",
                 str(tmp_path / "t.npz")]) == 2
    assert "is an input" in capsys.readouterr().err
    assert main(["regress", "-o", str(tmp_path / "o.npz")]) == 2
    assert "only for --tensors" in capsys.readouterr().err
