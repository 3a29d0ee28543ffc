"""Start-up time of light ``s2fp8`` commands: ``python -m bench.startup [--runs N]``.

Each row runs one command N times in a fresh interpreter (the installed ``s2fp8`` entry
point's code: ``python -c "from pysim.cli import main; ..."``) and prints the best and
median wall time, the best CPU time (user + sys of the child) and the number of modules
it imported. Target (issue 14): ``s2fp8 --help`` and ``s2fp8 cycles`` on a small CSV
under 0.3 s wall. On a shared machine the wall time includes waiting for a core: the CPU
column is what the command itself costs. The row "all parsers (previous)" runs the
same cycles command with every command's parser built, as the CLI did before issue 14.
tests/test_startup.py checks which modules the light commands import; this script only
reports.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_WALL_S = 0.3
#: Earlier figures on this 2-core machine, printed under the table for comparison.
PREVIOUS = (
    "previous: s2fp8 cycles on a 3-layer CSV 0.49 s wall, almost all of it imports (issue 14);\n"
    "          0.30-0.39 s wall under load with the memory model (pysim.perf.memory, 17-20 ms)\n"
    "          imported by every cycles run (the session before the lazy import)")

SMALL_CSV = "layer,M,N,K\nconv1,64,64,64\nfc1,128,32,256\nfc2,10,20,30\n"

#: script run by the child: the entry point's main(), then the module count on stderr
CHILD = """\
import sys
from pysim.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
sys.stderr.write(f"\\nMODULES {len(sys.modules)}\\n")
raise SystemExit(code)
"""
#: the same with every command's parser built, as the CLI did before issue 14
CHILD_ALL_COMMANDS = CHILD.replace(
    "code = main(sys.argv[1:])",
    "from pysim.cli import build_parser\n    args = build_parser().parse_args(sys.argv[1:])\n"
    "    code = args.run(args)")


def _measure(argv: list[str], runs: int, child: str = CHILD) -> tuple[float, float, float, int]:
    """(best wall, median wall, best CPU, modules) over ``runs`` runs after one warm-up."""
    walls, cpus, modules = [], [], -1
    for i in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", child, *argv], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if "MODULES" not in proc.stderr:
            raise RuntimeError(f"s2fp8 {' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
        modules = int(proc.stderr.rsplit("MODULES", 1)[1].split()[0])
        if i:  # the first run warms the page cache and .pyc files
            walls.append(wall)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(walls), statistics.median(walls), min(cpus), modules


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per row (default 7)")
    args = parser.parse_args(argv)

    print("bench.startup: wall time of light s2fp8 commands (fresh interpreter each run)")
    try:
        print("  load average %.2f %.2f %.2f on %d cores (other processes add wall time)"
              % (*os.getloadavg(), os.cpu_count() or 1))
    except OSError:
        pass
    print(f"  timing: best and median of {args.runs} runs after one warm-up; CPU = user + sys")
    print()
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "small.csv"
        csv.write_text(SMALL_CSV)
        rows = [
            ("python -c pass (floor)", None),
            ("s2fp8 --help", ["--help"]),
            ("s2fp8 cycles --help", ["cycles", "--help"]),
            ("s2fp8 cycles small.csv", ["cycles", str(csv), "--rows", "16", "--cols", "16"]),
            ("s2fp8 cycles resnet50", ["cycles", "resnet50", "--rows", "16", "--cols", "16"]),
            ("  all parsers (previous)", ["cycles", str(csv), "--rows", "16", "--cols", "16"]),
        ]
        print(f"{'command':<26} {'best s':>7} {'median s':>9} {'CPU s':>7} {'modules':>8}  target")
        for name, command in rows:
            if command is None:
                walls = []
                for _ in range(args.runs):
                    start = time.perf_counter()
                    subprocess.run([sys.executable, "-c", "pass"], check=True)
                    walls.append(time.perf_counter() - start)
                print(f"{name:<26} {min(walls):>7.3f} {statistics.median(walls):>9.3f}")
                continue
            child = CHILD_ALL_COMMANDS if "previous" in name else CHILD
            best, median, cpu, modules = _measure(command, args.runs, child)
            mark = ""
            if name in ("s2fp8 --help", "s2fp8 cycles small.csv"):
                mark = f"< {TARGET_WALL_S} s wall  {'PASS' if best < TARGET_WALL_S else 'BELOW'}"
            print(f"{name:<26} {best:>7.3f} {median:>9.3f} {cpu:>7.3f} {modules:>8}  {mark}")
    print()
    print(PREVIOUS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
