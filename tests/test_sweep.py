"""``s2fp8 sweep``: a grid on a local Dask cluster (results equal the memory model, rerun
skips finished points, an interrupted CSV resumes), on a real ``dask scheduler`` +
``dask worker`` started as processes, and bad sweep files."""
from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest

from pysim.cli import main
from pysim.cli.sweep import COLUMNS, run_sweep
from pysim.perf.accel import Accelerator
from pysim.perf.memory import memory_report
from pysim.workload.models import build_model, training_step_gemms

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DATA = Path(__file__).parent / "data"
SWEEP = """\
[sweep]
workloads = ["ncf"]
arrays = [[8, 8], [16, 16]]
buffer_kib = [16]
dram_bw = [4, 32.5]
formats = ["s2fp8", "bf16"]
"""


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_local_cluster_sweep_and_resume(tmp_path):
    sweep = tmp_path / "grid.toml"
    sweep.write_text(SWEEP)
    counts = run_sweep(sweep, workers=2, progress=False)
    out = tmp_path / "grid.csv"
    rows = read_rows(out)
    assert counts["run"] == len(rows) == 8 and counts["skipped"] == 0
    assert (tmp_path / "grid_pareto.png").read_bytes().startswith(PNG_MAGIC)
    # one point against the model run directly
    row = next(r for r in rows if r["point"] == "ncf|16x16|buf16|bw32.5|bf16")
    acc = Accelerator(rows=16, cols=16, a_bytes=8192, b_bytes=8192, dram_bw=Fraction(65, 2))
    total = memory_report(training_step_gemms(build_model("ncf")), acc, ["bf16"]).formats[
        "bf16"].total()
    assert int(row["cycles"]) == total["cycles"]
    assert int(row["dram_read_bytes"]) == total["dram_read_bytes"]
    assert float(row["energy_pj"]) == pytest.approx(total["energy_pj"], rel=1e-5)

    # rerun: nothing to do (no cluster started)
    assert run_sweep(sweep, progress=False)["run"] == 0
    # an interrupted run: the last row lost, the one before cut short inside its last
    # field (every column present, the value wrong: it must be run again)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:-2]) + lines[-2][:-2])
    counts = run_sweep(sweep, workers=1, progress=False)
    assert (counts["run"], counts["skipped"]) == (2, 6)
    assert sorted(r["point"] for r in read_rows(out)) == sorted(r["point"] for r in rows)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(args, log):
    return subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_sweep_on_a_dask_scheduler_and_worker_processes(tmp_path):
    """A real ``dask scheduler`` and ``dask worker`` on 127.0.0.1 (random free port);
    the sweep (a process, 2 minutes at most) connects with --scheduler; both are killed
    at the end."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = open(tmp_path / "dask.log", "w")
    scheduler = start(["scheduler", "--host", "127.0.0.1", "--port", str(port),
                       "--dashboard-address", ":0", "--no-show"], log)
    worker = None
    try:
        worker = start(["worker", address, "--nworkers", "1", "--nthreads", "1",
                        "--dashboard-address", ":0", "--no-dashboard"], log)
        from distributed import Client
        deadline = time.monotonic() + 60
        with Client(address, timeout="30s") as client:   # waits for the scheduler
            while not client.scheduler_info()["workers"]:
                assert time.monotonic() < deadline, (tmp_path / "dask.log").read_text()
                time.sleep(0.2)
        # a SCALE-Sim CSV workload, named relative to the TOML, read by the remote worker
        shutil.copy(DATA / "alexnet.csv", tmp_path / "alexnet.csv")
        sweep = tmp_path / "grid.toml"
        sweep.write_text(SWEEP.replace('"ncf"', '"ncf", "alexnet.csv"'))
        out = tmp_path / "remote.csv"
        done = subprocess.run([sys.executable, "-m", "pysim.cli", "sweep", str(sweep),
                               "--scheduler", address, "--out", str(out), "--no-progress"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "16 points: 0 already in" in done.stdout
        rows = read_rows(out)
        assert len(rows) == 16 and tuple(rows[0]) == COLUMNS
        assert {r["workload"] for r in rows} == {"ncf", "alexnet.csv"}
    finally:
        for process in (worker, scheduler):
            if process is not None:
                stop(process)
        log.close()


@pytest.mark.parametrize("text, message", [
    ("[sweep]\nworkloads = ['ncf']\narrays = [[8, 8]]\nbuffer_kib = [16]\ndram_bw = [4]\n",
     "[sweep] formats: must be a non-empty list"),
    (SWEEP.replace("formats", "format"), "[sweep] unknown key 'format'"),
    (SWEEP.replace('"bf16"', '"int4"'), "[sweep] formats: unknown format 'int4'"),
    (SWEEP.replace('"ncf"', '"nothere"'), "'nothere' is neither a file nor a built-in"),
    (SWEEP.replace("[16, 16]", "[16, 99]"), "cols must be an integer in 1..64, got 99"),
    (SWEEP.replace("32.5", "0"), "[sweep] dram_bw: must be > 0"),
    (SWEEP.replace("[sweep]", "[swept]"), "expected exactly one table [sweep]"),
    (SWEEP + "mant_bits = 30\n", "[sweep] mant_bits must be <= 24, got 30"),
])
def test_bad_sweep_file(tmp_path, capsys, text, message):
    sweep = tmp_path / "bad.toml"
    sweep.write_text(text)
    assert main(["sweep", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_unreachable_scheduler_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("pysim.cli.sweep.CONNECT_TIMEOUT", "1s")
    sweep = tmp_path / "grid.toml"
    sweep.write_text(SWEEP)
    assert main(["sweep", str(sweep), "--scheduler", f"tcp://127.0.0.1:{free_port()}"]) == 2
    assert "cannot connect" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.toml"]
