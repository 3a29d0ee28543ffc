"""RTL regression of the output path (cocotb under Verilator): random tensors (zeros,
subnormals, near-constant, Inf/NaN, ...) through both passes of s2fp8_outpath_c4,
statistics, alpha/beta and codes bit-exact against pysim.numerics.outpath, latencies 6
(statistics) and 7 (encoder). The build (~60 s on 2 cores) is cached in sim_build/."""
import os

import numpy as np
import pytest

from hw.tb import outpath_checks
from pysim.numerics import outpath

SEED = int(os.environ.get("S2FP8_SEED", "20240601"))


def test_outpath_random_tensors(rtl_build):
    rtl_build(outpath_checks.TOP)
    report = outpath_checks.run_random(60, SEED)
    print(f"seed {SEED}: " + "; ".join(report.notes))
    assert report.vectors > 0
    assert report.ok, "\n".join(report.errors)


def test_random_tensors_cover_the_hard_cases():
    tensors = outpath_checks.random_tensors(60, np.random.default_rng(SEED))
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
    x = (rng.standard_normal((3, 50)) * [[1e-3], [1.0], [30.0]]).astype(np.float32)
    x[1, ::4] = 0
    np.savez(path, x=x)
    return x


def test_tensor_file_through_rtl_writes_codes_alpha_beta(rtl_build, tmp_path):
    rtl_build(outpath_checks.TOP)
    x = _tensor_file(tmp_path / "t.npz", np.random.default_rng(SEED))
    report = outpath_checks.run_tensor_file(tmp_path / "t.npz", SEED, out=tmp_path / "o.npz")
    assert report.ok, "\n".join(report.errors)
    with np.load(tmp_path / "o.npz") as out:
        assert out["codes"].dtype == np.uint8 and out["codes"].shape == x.shape
        assert out["alpha"].dtype == np.float32 and out["alpha"].shape == (3,)
        for s in range(3):
            expect = outpath.encode_hw(x[s])
            assert np.array_equal(out["codes"][s], expect.codes)
            assert (out["alpha"][s], out["beta"][s]) == (expect.alpha, expect.beta)


def test_tensor_file_difference_is_decoded(rtl_build, tmp_path, monkeypatch):
    """A wrong expectation (one code flipped in the golden) is reported with the tensor,
    the value (hex and decimal) and both codes."""
    rtl_build(outpath_checks.TOP)
    _tensor_file(tmp_path / "t.npz", np.random.default_rng(SEED))
    real = outpath_checks.expected_output

    def off_by_one(bits):
        stats, alpha, beta, codes = real(bits)
        codes = codes.copy()
        codes[7] ^= 1
        return stats, alpha, beta, codes

    monkeypatch.setattr(outpath_checks, "expected_output", off_by_one)
    report = outpath_checks.run_tensor_file(tmp_path / "t.npz", SEED)
    assert report.mismatches == 3
    assert report.errors[0].startswith("tensor 0, value 7: 0x")
    assert "expected code" in report.errors[0] and "(1 codes differ)" in report.errors[0]


@pytest.mark.parametrize("arrays, message", [
    ({"y": np.zeros((2, 3), np.float32)}, "array 'x' is missing"),
    ({"x": np.zeros((2, 3), np.float32), "z": np.zeros(1)}, "unexpected array 'z'"),
    ({"x": np.zeros((2, 3))}, "dtype float64, expected float32"),
    ({"x": np.zeros(3, np.float32)}, "shape [3], expected [S, L]"),
    ({"x": np.zeros((2, 0), np.float32)}, "shape [2, 0]"),
    ({"x": np.float32([[1, 2], [3, np.inf]])}, "x[1, 1] is"),
])
def test_bad_tensor_files(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(outpath_checks.TensorFileError) as error:
        outpath_checks.load_tensor_file(path)
    assert message in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(outpath_checks.TensorFileError, match="no such file"):
        outpath_checks.load_tensor_file(tmp_path / "missing.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(outpath_checks.TensorFileError, match="not a readable"):
        outpath_checks.load_tensor_file(tmp_path / "empty.npz")
