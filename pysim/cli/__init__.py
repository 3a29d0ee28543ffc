"""The ``s2fp8`` command line: one entry point for every job the project does.

Each command lives in its own module exposing ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``. Exit codes: 0 ok, 1 internal error or failed check, 2 bad input.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from pysim.errors import BadInput

#: command name -> module implementing it
COMMANDS = {
    "demo": "pysim.cli.demo",
    "verilog": "pysim.cli.verilog",
    "regress": "pysim.cli.regress",
    "cycles": "pysim.cli.cycles",
    "trace": "pysim.cli.trace",
    "accuracy": "pysim.cli.accuracy",
    "sweep": "pysim.cli.sweep",
    "train": "pysim.cli.train",
    "synth": "pysim.cli.synth",
}

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
#: The reader of stdout went away (``s2fp8 cycles ... | head``): the status a shell
#: reports for a tool killed by SIGPIPE (128 + 13), without a message, as Unix tools do.
EXIT_BROKEN_PIPE = 141


def build_parser(argv=None) -> argparse.ArgumentParser:
    """The ``s2fp8`` parser. Given the command line ``argv``, only the command it names
    is imported and gets its arguments; the others are bare names (argparse only ever
    parses one). Without ``argv``, or when ``argv`` names no command (``s2fp8 --help``),
    every command module is imported, for its help line; arguments are added for all of
    them only when ``argv`` is None. Command modules import their heavy dependencies
    (numpy, matplotlib, torch, amaranth, ...) inside functions: ``s2fp8 --help`` then
    costs 0.15 s of CPU, most of it the interpreter and site packages' start-up."""
    parser = argparse.ArgumentParser(
        prog="s2fp8", description="S2FP8 MAC/GEMM hardware simulator",
        epilog="exit codes: 0 ok, 1 failed check or internal error, 2 bad input")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    for name, module_name in COMMANDS.items():
        if chosen is not None and name != chosen:
            sub.add_parser(name)
            continue
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        if argv is None or name == chosen:
            module.add_arguments(command)
            command.set_defaults(run=module.run)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        code = args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except BadInput as error:
        print(f"s2fp8 {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"s2fp8 {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug, not bad input: one line, the traceback on request
        if os.environ.get("S2FP8_DEBUG"):
            raise
        print(f"s2fp8 {args.command}: internal error: {type(error).__name__}: {error} "
              f"(set S2FP8_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_FAILED


def _silence_stdout() -> None:
    """Point stdout at /dev/null: Python flushes it again at exit, and a second
    BrokenPipeError there would print "Exception ignored ..." (Python's documented
    recipe for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a file (tests)
        pass
