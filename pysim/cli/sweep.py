"""``s2fp8 sweep SWEEP.toml``: the memory model over a grid, on Dask distributed.

The grid (workloads x arrays x operand-buffer sizes x DRAM bandwidths x formats, schema in
docs/memory.md) runs on a local cluster of worker processes (``--workers``, default 2)
or on an existing cluster (``--scheduler tcp://HOST:PORT``). One task evaluates every
format of one (workload, array, buffer, bandwidth) cell, so the workload's GEMMs are
built once per task (and cached per worker process). Each finished point is appended to
the results CSV as it arrives (one line, flushed); on a rerun the points already in the
CSV are skipped, so an interrupted sweep resumes where it stopped. A Pareto plot (cycles
vs energy, per workload) is written at the end from the whole CSV.
"""
from __future__ import annotations

import argparse
import csv
import functools
import itertools
import logging
import sys
from pathlib import Path

from pysim.errors import BadInput

HELP = "memory-model sweep (arrays x buffers x bandwidths x formats x workloads) on Dask"

EPILOG = """\
SWEEP.toml (docs/memory.md):
  [sweep]
  workloads = ["resnet50", "layers.csv"]   # built-in models or files (relative to the TOML)
  arrays = [[16, 16], [32, 32]]            # rows x cols
  buffer_kib = [128, 256, "inf"]           # A + B operand buffers, split evenly
  dram_bw = [16, 32, "inf"]                # bytes per cycle
  formats = ["s2fp8", "bf16", "fp32"]
  config = "acc.toml"                      # optional: every other accelerator field
  training = false                         # files: forward + dgrad + wgrad

exit codes: 0 ok, 1 internal error, 2 bad input (one line naming the file/key/value)
"""

COLUMNS = ("point", "workload", "rows", "cols", "buffer_kib", "dram_bw", "format",
           "gemms", "macs", "compute_cycles", "stall_cycles", "cycles", "dram_read_bytes",
           "dram_write_bytes", "energy_pj", "seconds")
#: how long --scheduler waits for the cluster to answer
CONNECT_TIMEOUT = "10s"
SWEEP_KEYS = {"workloads", "arrays", "buffer_kib", "dram_bw", "formats", "config",
              "training", "mant_bits"}


def add_arguments(parser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("sweep", metavar="SWEEP.toml", help="the grid to run")
    parser.add_argument("--out", metavar="FILE.csv",
                        help="results CSV (default: SWEEP.csv next to the TOML); points "
                             "already in it are skipped")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="Pareto plot (default: the CSV's name + _pareto.png)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="run on an existing Dask cluster instead of a local one")
    parser.add_argument("--workers", default="2", metavar="N",
                        help="worker processes of the local cluster (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


# ------------------------------------------------------------------------- the grid

def _list(data: dict, key: str, source: str) -> list:
    value = data.get(key)
    if not isinstance(value, list) or not value:
        raise BadInput(f"{source}: [sweep] {key}: must be a non-empty list, got {value!r}")
    return value


def read_sweep(path) -> tuple[list[dict], dict]:
    """The points of a sweep TOML (validated) and the shared settings."""
    from pysim.perf.accel import parse_bandwidth, parse_bytes, read_toml
    from pysim.perf.formats_cost import operand_format
    from pysim.workload.models import MODELS

    path = Path(path)
    source = str(path)
    data = read_toml(path)
    if set(data) != {"sweep"} or not isinstance(data["sweep"], dict):
        raise BadInput(f"{source}: expected exactly one table [sweep], got "
                       f"{', '.join(f'[{k}]' for k in data) or 'nothing'}")
    sweep = data["sweep"]
    unknown = sorted(set(sweep) - SWEEP_KEYS)
    if unknown:
        raise BadInput(f"{source}: [sweep] unknown key {unknown[0]!r} (expected "
                       f"{', '.join(sorted(SWEEP_KEYS))})")
    config = sweep.get("config")
    if config is not None:
        if not isinstance(config, str) or not config:
            raise BadInput(f"{source}: [sweep] config: must be a file name, got {config!r}")
        config = str((path.parent / config).resolve())
    training = sweep.get("training", False)
    if not isinstance(training, bool):
        raise BadInput(f"{source}: [sweep] training: must be true or false, got {training!r}")
    mant_bits = sweep.get("mant_bits")
    if mant_bits is not None:
        from pysim.numerics.formats import MANT_BITS_MAX, MANT_BITS_MIN
        from pysim.validate import check_int
        mant_bits = check_int(mant_bits, f"{source}: [sweep] mant_bits",
                              minimum=MANT_BITS_MIN, maximum=MANT_BITS_MAX)
    workloads = []
    for spec in _list(sweep, "workloads", source):
        if not isinstance(spec, str) or not spec:
            raise BadInput(f"{source}: [sweep] workloads: must be model names or file names, "
                           f"got {spec!r}")
        file = path.parent / spec
        if spec in MODELS and not file.exists():
            workloads.append(spec)
        elif file.exists():
            workloads.append(str(file.resolve()))
        else:
            raise BadInput(f"{source}: [sweep] workloads: {spec!r} is neither a file nor a "
                           f"built-in model ({', '.join(MODELS)})")
    arrays = []
    for value in _list(sweep, "arrays", source):
        if not (isinstance(value, list) and len(value) == 2):
            raise BadInput(f"{source}: [sweep] arrays: each must be [rows, cols], got {value!r}")
        arrays.append(tuple(value))
    buffers = [parse_bytes(f"{source}: [sweep] buffer_kib", v)
               for v in _list(sweep, "buffer_kib", source)]
    bandwidths = [parse_bandwidth(f"{source}: [sweep] dram_bw", v)
                  for v in _list(sweep, "dram_bw", source)]
    formats = _list(sweep, "formats", source)
    for name in formats:
        operand_format(name, f"{source}: [sweep] formats")
    settings = {"config": config, "training": training, "mant_bits": mant_bits}
    cells = []
    for workload, (rows, cols), kib, bw in itertools.product(workloads, arrays, buffers,
                                                            bandwidths):
        cell = {"workload": workload, "rows": rows, "cols": cols,
                "buffer_kib": "inf" if kib is None else str(kib),
                "dram_bw": _bandwidth_text(bw), "formats": list(formats)}
        try:  # every cell's accelerator is valid before anything runs
            build_accelerator(cell, settings)
        except BadInput as error:
            raise BadInput(f"{source}: point {point_key(cell, formats[0])}: {error}") from None
        cells.append(cell)
    return cells, settings


def _bandwidth_text(bw) -> str:
    """"inf", "32" or "25.6": a decimal (its denominator is 2^a 5^b, so the float's repr
    is exact and parses back to the same fraction)."""
    if bw is None:
        return "inf"
    return str(bw.numerator) if bw.denominator == 1 else repr(float(bw))


def point_key(cell: dict, fmt: str) -> str:
    """The identity of a point in the results CSV (what resuming compares)."""
    return "|".join([Path(cell["workload"]).name, f"{cell['rows']}x{cell['cols']}",
                     f"buf{cell['buffer_kib']}", f"bw{cell['dram_bw']}", fmt])


def build_accelerator(cell: dict, settings: dict):
    from pysim.perf.accel import load_accelerator
    return load_accelerator(settings["config"], rows=cell["rows"], cols=cell["cols"],
                            mant_bits=settings["mant_bits"], dram_bw=cell["dram_bw"],
                            buffer_kib=cell["buffer_kib"])


@functools.lru_cache(maxsize=16)
def workload_gemms(spec: str, training: bool):
    """GEMMs of a workload (cached per worker process)."""
    from pysim.workload.importers import load_input
    from pysim.workload.models import MODELS, build_model, training_step_gemms
    if spec in MODELS and not Path(spec).exists():
        return tuple(training_step_gemms(build_model(spec)))
    return tuple(load_input(spec, training=training).gemms())


def evaluate_cell(cell: dict, settings: dict, todo: list[str]) -> list[dict]:
    """Run the memory model for the formats ``todo`` of one cell (on a worker)."""
    import time

    from pysim.perf.memory import memory_report
    gemms = workload_gemms(cell["workload"], settings["training"])
    acc = build_accelerator(cell, settings)
    rows = []
    for fmt in todo:
        start = time.perf_counter()
        result = memory_report(gemms, acc, [fmt]).formats[fmt]
        total = result.total()
        rows.append({"point": point_key(cell, fmt), "workload": Path(cell["workload"]).name,
                     "rows": cell["rows"], "cols": cell["cols"],
                     "buffer_kib": cell["buffer_kib"], "dram_bw": cell["dram_bw"],
                     "format": fmt, "gemms": len(gemms), "macs": total["macs"],
                     "compute_cycles": total["compute_cycles"],
                     "stall_cycles": total["stall_cycles"], "cycles": total["cycles"],
                     "dram_read_bytes": total["dram_read_bytes"],
                     "dram_write_bytes": total["dram_write_bytes"],
                     "energy_pj": f"{total['energy_pj']:.6g}",
                     "seconds": f"{time.perf_counter() - start:.4f}"})
    return rows


# ------------------------------------------------------------------------ results

def read_results(path: Path) -> list[dict]:
    """The complete rows of an existing results CSV (a line cut short by an interrupted
    run is dropped); a CSV with other columns is refused rather than appended to."""
    if not path.exists():
        return []
    try:
        text = path.read_text()
    except OSError as error:
        raise BadInput(f"{path}: cannot read: {error.strerror or error}") from None
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]           # an interrupted write
    reader = csv.DictReader(lines)
    if lines and tuple(reader.fieldnames or ()) != COLUMNS:
        raise BadInput(f"{path}: exists and is not a sweep results CSV (columns "
                       f"{reader.fieldnames}); choose another --out")
    return [row for row in reader if None not in row.values() and len(row) == len(COLUMNS)]


def pareto_png(rows: list[dict], title: str) -> bytes:
    """Cycles vs energy, one panel per workload, coloured by format; the Pareto front
    (no other point has both fewer cycles and less energy) joined by a line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from pysim.perf.roofline import FORMAT_COLORS
    workloads = sorted({r["workload"] for r in rows})
    fig = Figure(figsize=(7 * len(workloads), 5.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for index, workload in enumerate(workloads):
        ax = fig.add_subplot(1, len(workloads), index + 1)
        points = [r for r in rows if r["workload"] == workload]
        for fmt in sorted({r["format"] for r in points}):
            mine = [r for r in points if r["format"] == fmt]
            ax.scatter([int(r["cycles"]) for r in mine],
                       [float(r["energy_pj"]) / 1e9 for r in mine], s=16, alpha=0.7, color=FORMAT_COLORS.get(fmt, "#999999"), label=fmt)
        ordered = sorted(points, key=lambda r: (int(r["cycles"]), float(r["energy_pj"])))
        front, best = [], float("inf")
        for r in ordered:
            if float(r["energy_pj"]) < best:
                front.append(r)
                best = float(r["energy_pj"])
        ax.plot([int(r["cycles"]) for r in front], [float(r["energy_pj"]) / 1e9 for r in front],
                color="black", linewidth=1, drawstyle="steps-post", label="Pareto front")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("cycles per step")
        ax.set_ylabel("energy per step (mJ)")
        ax.set_title(f"{workload}: {len(points)} points", fontsize=10)
        ax.grid(which="major", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    import io
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# ---------------------------------------------------------------------------- run

def start_client(scheduler: str | None, workers: int):
    """A Dask client: to ``scheduler``, or to a new LocalCluster of worker processes."""
    from distributed import Client, LocalCluster
    if scheduler:
        try:
            return Client(scheduler, timeout=CONNECT_TIMEOUT), None
        except (OSError, TimeoutError) as error:
            raise BadInput(f"--scheduler: cannot connect to {scheduler}: {error}") from None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    return Client(cluster), cluster


def run_sweep(sweep_path, out=None, plot=None, scheduler=None, workers=2,
              progress=True) -> dict:
    """Run (or resume) a sweep; returns counts ``{"points", "skipped", "run"}``."""
    from tqdm import tqdm

    from pysim.files import atomic_write, check_outputs
    sweep_path = Path(sweep_path)
    cells, settings = read_sweep(sweep_path)
    out = Path(out) if out else sweep_path.with_suffix(".csv")
    plot = Path(plot) if plot else out.with_name(out.stem + "_pareto.png")
    inputs = [sweep_path] + sorted({c["workload"] for c in cells
                                    if Path(c["workload"]).is_file()})
    inputs += [settings["config"]] if settings["config"] else []
    check_outputs([out, plot], inputs)   # an output over a workload CSV is refused
    done_rows = read_results(out)
    done = {row["point"] for row in done_rows}
    tasks = []
    for cell in cells:
        todo = [f for f in cell["formats"] if point_key(cell, f) not in done]
        if todo:
            tasks.append((cell, todo))
    total_points = sum(len(c["formats"]) for c in cells)
    counts = {"points": total_points, "skipped": total_points - sum(len(t) for _, t in tasks),
              "run": 0}
    client = cluster = None
    if tasks:  # connect first: a bad --scheduler leaves no file behind
        client, cluster = start_client(scheduler, workers)
    # rewrite the kept rows (drops a cut-short last line), then append as results arrive
    atomic_write(out, "".join([",".join(COLUMNS) + "\n"] + [_csv_line(r) for r in done_rows]),
                 inputs)
    if tasks:
        from distributed import as_completed
        try:
            futures = [client.submit(evaluate_cell, cell, settings, todo, pure=False)
                       for cell, todo in tasks]
            with open(out, "a", newline="") as handle, tqdm(
                    total=sum(len(t) for _, t in tasks), disable=not progress,
                    desc="sweep", unit="point", file=sys.stderr) as bar:
                for future in as_completed(futures):
                    rows = future.result()
                    for row in rows:
                        handle.write(_csv_line(row))
                    handle.flush()
                    counts["run"] += len(rows)
                    bar.update(len(rows))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    all_rows = read_results(out)
    atomic_write(plot, pareto_png(all_rows, f"{sweep_path.name}: {len(all_rows)} points"), inputs)
    counts["out"], counts["plot"] = str(out), str(plot)
    return counts


def _csv_line(row: dict) -> str:
    import io
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([row[c] for c in COLUMNS])
    return buffer.getvalue()


def run(args) -> int:
    from pysim.cli.cycles import parse_int_option
    workers = parse_int_option("--workers", args.workers, 1, 64)
    for option, suffix in (("out", ".csv"), ("plot", ".png")):
        value = getattr(args, option)
        if value is not None and not value.lower().endswith(suffix):
            raise BadInput(f"--{option}: the file name must end in {suffix}, got {value!r}")
    counts = run_sweep(args.sweep, args.out, args.plot, args.scheduler, workers,
                       progress=not args.no_progress)
    print(f"{counts['points']} points: {counts['skipped']} already in {counts['out']}, "
          f"{counts['run']} run")
    print(f"wrote {counts['out']} and {counts['plot']}")
    return 0
