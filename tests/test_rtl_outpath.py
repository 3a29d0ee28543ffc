"""RTL regression of the output path (cocotb under Verilator): random tensors (zeros,
subnormals, near-constant, Inf/NaN, ...) through both passes of s2fp8_outpath_c4,
statistics, alpha/beta and codes bit-exact against pysim.numerics.outpath, latencies 6
(statistics) and 7 (encoder). The build (~60 s on 2 cores) is cached in sim_build/."""
import os

import numpy as np

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
