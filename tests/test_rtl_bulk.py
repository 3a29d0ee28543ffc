"""The bulk co-simulation's scoreboard goes red on a wrong result, a wrong cycle, a lost
row and a bad stimulus (the volume itself runs as the registered checks array_bulk_*,
tests/test_rtl_registry.py). One small 4x4 run (~1 s once built), scored as it came
and then with its results tampered with."""
import numpy as np
import pytest

from hw.tb import array_checks, bulk, bulk_checks
from pysim.perf.arch import ArrayConfig

CONFIG = ArrayConfig(4, 4)


@pytest.fixture(scope="module")
def run(seed):
    jobs = bulk_checks.random_jobs(100_000, np.random.default_rng(seed), CONFIG)
    vectors = array_checks.job_vectors(jobs, CONFIG)
    result = bulk.run_bulk(bulk.get_bulk_build(CONFIG), vectors)
    return jobs, vectors, result.results


def _score(run, **changes):
    jobs, vectors, got = run
    return array_checks.score_jobs("bulk", jobs, vectors["rows"], {**got, **changes}, CONFIG)


def test_clean_run_passes(run):
    jobs, _, got = run
    assert any(len(job["ready"]) for job in jobs), "no job with back-pressure"
    report = _score(run)
    assert report.ok, report.errors
    assert report.vectors == sum(int(np.prod(job["shape"])) for job in jobs)


def test_wrong_result_caught(run):
    values = run[2]["row_values"].copy()
    values[len(values) // 2, 1] ^= 1
    report = _score(run, row_values=values)
    assert report.mismatches == 1 and "expected" in report.first_mismatch


@pytest.mark.parametrize("field", ["pop", "accept"])
def test_wrong_cycle_caught(run, field):
    cycles = run[2][field].copy()
    cycles[len(cycles) // 3:] += 1          # one cycle late from there on
    report = _score(run, **{field: cycles})
    assert not report.ok and report.mismatches == 0
    assert "gemm_schedule" in report.first_mismatch


def test_lost_rows_caught(run):
    got = run[2]
    report = _score(run, row_index=got["row_index"][:-1], row_values=got["row_values"][:-1],
                    pop=got["pop"][:-1])
    assert not report.ok and "rows lost" in report.first_mismatch


def test_missing_stimulus_refused():
    with pytest.raises(ValueError, match="lacks ready"):
        bulk.run_bulk(bulk.get_bulk_build(CONFIG), {name: np.zeros(0) for name in
                                                    bulk.STIMULUS if name != "ready"})


def test_registered_inputs_build_is_cycle_exact(seed):
    """The faster build (every input behind a register, hw.tb.bulk.RegisteredInputsArray)
    reads its outputs after the edge: on a 2x2 array (its own small Verilator build) every
    result is bit-exact and every accept and pop cycle equals gemm_schedule, gaps and
    back-pressure included."""
    config = ArrayConfig(2, 2)
    jobs = bulk_checks.random_jobs(5_000, np.random.default_rng(seed), config)
    assert any(len(job["ready"]) for job in jobs)
    report = bulk_checks.run_bulk_jobs("bulk_registered_2x2", jobs, config=config,
                                       registered=True)
    assert report.ok, report.errors
    # Verilator kept the PE a module of its own (bulk.NO_INLINE_PE, 25 % less CPU on 8x8)
    model = bulk.get_bulk_build(config, registered=True).model.directory
    assert (model / f"Vtop_{config.pe_name}.h").is_file(), "the PE was inlined"


def test_shards_give_the_same_results(run):
    """Consecutive runs of jobs in side-by-side harness processes, results concatenated:
    identical to one process, field by field."""
    jobs, vectors, got = run
    pieces = bulk.split_jobs(vectors, 3)
    assert len(pieces) >= 2
    assert [first for first, _ in pieces] == sorted({first for first, _ in pieces})
    assert sum(len(piece["k"]) for _, piece in pieces) == len(jobs)
    sharded = bulk.run_bulk(bulk.get_bulk_build(CONFIG), vectors, shards=3).results
    for field in ("accept", "pop", "row_index", "row_values", "stalled_job", "cycles"):
        assert np.array_equal(sharded[field], got[field]), field
