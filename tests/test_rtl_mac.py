"""The S2FP8 MAC regression's own parts (its checks, exhaustive code pairs and random
sequences, run from tests/test_rtl_registry.py):

- the random-sequence generator really makes the hard cases it claims;
- ``s2fp8 regress --vectors``: a good file passes, a wrong expectation is reported
  decoded with exit 1, malformed files get a one-line error naming the array, exit 2.
"""
import numpy as np
import pytest

from hw.tb import mac_checks
from pysim.numerics import golden, s2fp8
from pysim.cli import main

def test_random_sequences_cover_the_hard_cases(seed):
    """The generator really makes what the regression claims to test."""
    rng = np.random.default_rng(seed)
    codes_a, codes_b, lengths, init = mac_checks.random_sequences(2000, rng)
    table_a = s2fp8.decode_table(1.0, 60.0)
    table_b = s2fp8.decode_table(1.0, 75.0)
    assert lengths.min() == 1 and lengths.max() == 256
    assert (codes_a == 0).any() and ((codes_b & 0x7F) >= 0x7C).any()
    out = golden.mac(table_a, table_b, codes_a, codes_b, init, lengths).view(np.float32)
    assert np.isnan(out).any() and np.isinf(out).any()
    assert ((out != 0) & (np.abs(out) < 2.0 ** -126)).any(), "no subnormal results"
    assert (out == 0).sum() > 10, "no cancellation to zero"


@pytest.fixture(scope="module")
def vector_files(tmp_path_factory, seed):
    rng = np.random.default_rng(seed)
    table_a, table_b = s2fp8.decode_table(5.0, 21.0), s2fp8.decode_table(2.0, -3.0)
    codes_a = rng.integers(0, 0x7C, (40, 12), dtype=np.uint8)
    codes_b = rng.integers(0, 0x7C, (40, 12), dtype=np.uint8)
    init = rng.integers(0, 1 << 31, 40, dtype=np.uint64).astype(np.uint32) & np.uint32(0x3FFFFFFF)
    expected = golden.mac(table_a, table_b, codes_a, codes_b, init)
    arrays = dict(table_a=table_a, table_b=table_b, codes_a=codes_a, codes_b=codes_b,
                  init=init, expected=expected)
    directory = tmp_path_factory.mktemp("vectors")
    files = {}

    def write(name, **changes):
        path = directory / f"{name}.npz"
        data = {**arrays, **changes}
        np.savez(path, **{k: v for k, v in data.items() if v is not None})
        files[name] = path

    write("good")
    wrong = expected.copy()
    wrong[5] ^= 1
    write("wrong", expected=wrong)
    write("short_table", table_a=table_a[:100])
    write("int_codes", codes_b=codes_b.astype(np.int16))
    write("no_init", init=None)
    write("bad_expected_shape", expected=expected[:-1])
    (directory / "not_npz.npz").write_text("hello")
    files["not_npz"] = directory / "not_npz.npz"
    return files


def test_vector_file_good_and_wrong(rtl_build, vector_files, capsys):
    rtl_build("s2fp8_mac_w24")
    assert main(["regress", "--vectors", str(vector_files["good"])]) == 0
    assert main(["regress", "--vectors", str(vector_files["wrong"])]) == 1
    out = capsys.readouterr().out
    assert "sequence 5 (12 products)" in out and "expected 0x" in out and "got 0x" in out


@pytest.mark.parametrize("name, words", [
    ("short_table", "'table_a' has shape [100]"),
    ("int_codes", "'codes_b' has dtype int16"),
    ("no_init", "'init' is missing"),
    ("bad_expected_shape", "'expected' has shape [39]"),
    ("not_npz", "not a .npz file"),
])
def test_vector_file_malformed(vector_files, capsys, name, words):
    assert main(["regress", "--vectors", str(vector_files[name])]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
