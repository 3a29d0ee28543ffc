"""Mutation check of the RTL regression: ``python -m bench.mutations [--only NAME ...]``.

Applies each mutation of ``MUTATIONS`` (one small edit of the Amaranth source: rounding
mode, sticky bit, operand sign, skew, tile spacing, result credits) to a temporary copy of
the tree, runs the amaranth.sim tests that guard it there (``python -m pytest -x``), and
prints a table: a mutation is KILLED when those tests fail, SURVIVED when they pass. The
same test selections are first run on the unmutated copy (they must pass, or a kill
means nothing). Exit code 0 when every mutation is killed and the baseline passes.
tests/test_hw_mutations.py checks that every mutation still applies to the source.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: what the temporary tree needs: the packages, the tests and pytest's configuration
COPIED = ("hw", "pysim", "tests", "pyproject.toml")


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str           # file, relative to the repository root
    old: str            # text replaced (must occur exactly once)
    new: str
    tests: tuple        # pytest arguments that must fail on the mutant

    def apply(self, text: str) -> str:
        if text.count(self.old) != 1:
            raise ValueError(f"mutation {self.name}: {self.path} contains the text to mutate "
                             f"{text.count(self.old)} times, expected once: {self.old!r}")
        return text.replace(self.old, self.new)


_FP32 = "tests/test_hw_fp32.py"
_ARRAY = "tests/test_hw_array.py"

MUTATIONS = (
    Mutation("rounding: ties away from zero", "hw/fp32/round.py",
             "increment = pr.round & (pr.sticky | pr.sig[0])", "increment = pr.round",
             (_FP32, "-k", "test_round or fpmul_full")),
    Mutation("sticky: shifted-out bits dropped", "hw/fp32/align.py",
             "aligned_small = shifted | lost", "aligned_small = shifted",
             (_FP32, "-k", "align or fpadd")),
    Mutation("sign: code sign not applied", "hw/decoder.py",
             "self.value.sign.eq(read.data.sign ^ code_sign)",
             "self.value.sign.eq(read.data.sign)",
             ("tests/test_hw_mac.py",)),
    Mutation("sign: product sign from a only", "hw/fp32/multiply.py",
             "p.sign.eq(a.sign ^ b.sign)", "p.sign.eq(a.sign)",
             (_FP32, "-k", "sig_mul or fpmul_full")),
    Mutation("skew: column j delayed j - 1", "hw/array.py",
             'delay(m, b_values[j], j, f"b{j}_skew")',
             'delay(m, b_values[j], max(j - 1, 0), f"b{j}_skew")',
             (_ARRAY, "-k", "matches_golden")),
    Mutation("spacing: last beats S - 1 apart", "hw/array.py",
             "(since_last < self.tile_spacing) | (credits < rows)",
             "(since_last < self.tile_spacing - 1) | (credits < rows)",
             (_ARRAY, "-k", "matches_golden or timing")),
    Mutation("credits: no result-credit check", "hw/array.py",
             "(since_last < self.tile_spacing) | (credits < rows)",
             "(since_last < self.tile_spacing)",
             (_ARRAY, "-k", "backpressure or credits")),
    # the pipelined accumulator loop (docs/silicon.md, "Lifting the clock")
    Mutation("interleave: MAC accepts a beat out of its slot's phase", "hw/mac.py",
             "self.operands.ready.eq(~writing & turn)", "self.operands.ready.eq(~writing)",
             ("tests/test_hw_mac.py", "-k", "sequences")),
    Mutation("interleave: array accepts a beat out of its slot's phase", "hw/array.py",
             "ready = ~writing & turn", "ready = ~writing",
             (_ARRAY, "-k", "interleaved")),
    Mutation("interleave: idle loop cycles add +0 instead of -0", "hw/mac.py",
             "add.b.eq(Mux(valid, product, NEGATIVE_ZERO))", "add.b.eq(Mux(valid, product, 0))",
             ("tests/test_hw_mac.py", "-k", "zero")),
    Mutation("interleave: PE result taken one loop stage early", "hw/array.py",
             'delay(m, ctl.valid & ctl.last, self._acc_stages - 1, "last_sum")',
             'delay(m, ctl.valid & ctl.last, max(self._acc_stages - 2, 0), "last_sum")',
             (_ARRAY, "-k", "interleaved")),
)


def _copy_tree(destination: Path) -> None:
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, destination / name)


def _pytest(tree: Path, args: tuple) -> tuple[int, float, str]:
    """Run pytest on ``tree`` (first on sys.path, ahead of the editable install)."""
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                           *args], cwd=tree, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return done.returncode, time.monotonic() - start, lines[-1] if lines else done.stderr[-200:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mutations", description=__doc__)
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="mutations whose name starts with one of these words")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip running the selections on the unmutated tree")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS
              if not args.only or any(m.name.startswith(word) for word in args.only)]
    ok = True
    with tempfile.TemporaryDirectory(prefix="s2fp8-mutations-") as root:
        tree = Path(root) / "tree"
        _copy_tree(tree)
        if not args.no_baseline:
            print("baseline (unmutated tree): the selections must pass")
            for selection in dict.fromkeys(m.tests for m in chosen):
                code, seconds, last = _pytest(tree, selection)
                ok &= code == 0
                print(f"  {'pass' if code == 0 else 'FAIL':<5} {seconds:6.1f} s  "
                      f"{' '.join(selection)}  ({last})", flush=True)
        print(f"\n  {'mutation':<36} {'file':<20} {'result':<9} {'s':>6}  tests")
        for mutation in chosen:
            target = tree / mutation.path
            original = target.read_text()
            target.write_text(mutation.apply(original))
            try:
                code, seconds, last = _pytest(tree, mutation.tests)
            finally:
                target.write_text(original)
            # pytest exit 1: tests failed (the mutant is killed); 0: it survived; else an error
            result = {0: "SURVIVED", 1: "KILLED"}.get(code, f"ERROR {code}")
            ok &= code == 1
            print(f"  {mutation.name:<36} {mutation.path:<20} {result:<9} {seconds:6.1f}  "
                  f"{' '.join(mutation.tests)}  ({last})", flush=True)
    print(f"\n{'all mutations killed' if ok else 'NOT all mutations killed (or baseline failed)'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
