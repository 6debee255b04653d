"""The ``fastloss`` command line (also ``python -m fastloss``).

    fastloss --version          version, OpenMP on/off, threads, SIMD path
    fastloss show-config        fastloss.show_config()
    fastloss bench [options]    fastloss vs the memory floor, NumPy reference, torch, sklearn
    fastloss eval [options]     a loss and accuracies over .npy/.npz prediction files

``main(argv=None)`` returns the exit status (0 on success; 1 when a fastloss call failed, a
result disagreed with the reference, or an output file could not be written; 2 on bad
arguments; 130 when interrupted); the console script passes it to ``sys.exit``.

The subcommands live in ``fastloss.cli.eval`` and ``fastloss.cli.bench.command``; each has an
``add_parser(subparsers)`` and a ``run(args)``.
"""

import argparse
import os
import sys

import fastloss

from . import eval as eval_command
from .bench import command as bench_command

__all__ = ["main", "build_parser"]


def _version_text():
    conf = fastloss.config()
    return (
        f"fastloss {conf['version']} (OpenMP {'on' if conf['openmp'] else 'off'}, "
        f"{conf['threads']} threads, SIMD {conf['simd']}, backend {conf['backend']}, "
        f"numpy {conf['numpy']})"
    )


class _VersionAction(argparse.Action):
    """--version computed when asked (fastloss.config() reflects the environment)."""

    def __init__(
        self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None
    ):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version_text())
        parser.exit(0)


def _subparser(parser_class=argparse.ArgumentParser, **kwargs):
    """Builds every subcommand's parser: ``subparsers.add_parser(name, parser_class=C, ...)``
    gives a subcommand its own parser class (argparse passes the keywords through)."""
    return parser_class(**kwargs)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fastloss",
        description="fastloss: fused, SIMD, multi-threaded CPU kernels for ML losses.",
    )
    parser.add_argument(
        "--version",
        action=_VersionAction,
        help="print the version, OpenMP on/off, threads and SIMD path, and exit",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_subparser)

    sub.add_parser(
        "show-config",
        help="print fastloss.show_config()",
        description="Print version, backend, OpenMP, threads and the SIMD path.",
    )
    bench_command.add_parser(sub)
    eval_command.add_parser(sub)
    return parser


def main(argv=None):
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, so that a closed pipe is caught below, not at exit
        return code
    except BrokenPipeError:
        # the reader went away (`fastloss eval ... | head`): stop quietly, as a program killed
        # by SIGPIPE would; stdout goes to /dev/null so Python's final flush cannot fail
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13


def _main(argv):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(argv)
        args.command_line = ["fastloss", *argv]
        if args.command == "show-config":
            fastloss.show_config()
            return 0
        if args.command == "bench":
            return bench_command.run(args)
        if args.command == "eval":
            return eval_command.run(args)
        parser.print_help(sys.stderr)
        return 2
    except SystemExit as exc:  # argparse's errors and --version / --help
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
