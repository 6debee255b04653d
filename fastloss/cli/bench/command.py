"""``fastloss bench``: the subcommand's options, the checks argparse cannot make, and the run
with its output files (the engine: runner, report)."""

import argparse
import os
import sys

import fastloss

from .. import _argtypes
from . import cases, machine, report, runner

__all__ = ["add_parser", "run"]

_DTYPES = {"float32": ("float32",), "float64": ("float64",), "both": ("float32", "float64")}
_PEERS = ("numpy", "torch", "sklearn")

_EPILOG = """\
what is timed, per loss x shape x dtype (best of K wall times, one run):
  loss      fastloss forward only                       floor: x.sum()
  fwd+bwd   return_grad=True, gradient allocated        floor: np.copy(x)
  grad_out  return_grad=True into a preallocated buffer floor: np.copyto(buf, x)
  fwd       log_softmax / softmax / logsumexp output    floor: np.copy(x) / x.sum()
Floors are scaled by the extra bytes a loss reads (targets): x1.5 on the copy floors and x2
on the read floor for elementwise losses.  x floor = fastloss / floor (1.00x = at the memory
limit); vs numpy / torch / sklearn = their time / fastloss time (speedup).  Peers: the NumPy
reference fastloss.reference.<name>, torch.nn.functional with autograd (if importable), and
sklearn._loss loss_gradient (grad_out row, if importable) for cross_entropy,
binary_cross_entropy_with_logits, mse_loss, l1_loss and huber_loss.

With N > 1 threads, a last section times the compute-bound cases (cross_entropy and
focal_loss with at most 48 classes, the kernels' small-C bound; sigmoid_focal_loss; 65536
elements or more), loss only and grad_out, on 1 and on N threads, and as N Python threads
each making the call on one thread at once (speedup over the same N calls one after another:
the GIL is released).

A cell is marked ? (and the reason printed after its row, "flags" in the JSON) when its
timing is not trustworthy: the median of a time's measurements is more than 1.5x their
best ("X spread"), or other processes used more than 10% of the CPUs during the case
("busy").  The run ends with one summary line: rows, flagged rows and why, the load.

--contention ends the run with the busy-machine section: cross_entropy 262144x10 and
1024x100, mse_loss 1048576 and softmax 4096x1000 (float32), median times on the run's
threads and on 1 thread, first idle, then with (usable CPUs - 1) busy-spinning processes
that bench starts and stops.

--json FILE writes every measurement: settings, machine, versions, fastloss_config and
results[] with loss, kind, shape, dtype, mode, elements, bytes, threads, fastloss_s,
ns_per_element, floor_op, floor_raw_s, floor_factor, floor_s, x_floor, numpy_s, vs_numpy,
torch_s, vs_torch, sklearn_s, vs_sklearn, spread, flags, trust, error, notes; checks[]
(accuracy vs the reference or torch); scaling[] (one_thread_s, threads_s, speedup,
python_threads_s, python_serial_s, python_speedup per compute-bound case and mode); and
contention (the busy-machine section, or null).  Schema: docs/bench-json.md.
--plot FILE.png draws one small panel per loss family and mode (time / memory floor, log
scale); needs matplotlib: pip install 'fastloss[plot]'.
"""


def add_parser(subparsers):
    """Register the `bench` subcommand on fastloss.cli's subparsers."""
    available = cases.available_losses()
    b = subparsers.add_parser(
        "bench",
        help="benchmark against the memory floor, NumPy, torch and scikit-learn",
        description="Time fastloss's losses against the memory floor measured in the same "
        "run, the NumPy reference, torch and scikit-learn.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument(
        "--quick",
        action="store_true",
        help="shapes about 1/8 of the default sizes, 3 repeats (under a minute)",
    )
    b.add_argument("--json", metavar="FILE", help="write every measurement to FILE as JSON")
    b.add_argument(
        "--markdown",
        metavar="FILE.md",
        help="write the results as a Markdown table (as in the README)",
    )
    b.add_argument(
        "--plot",
        metavar="FILE.png",
        help="draw time / memory floor per loss family and mode (fastloss, torch, "
        "sklearn); needs matplotlib",
    )
    b.add_argument(
        "--threads",
        type=_argtypes.positive_int,
        metavar="N",
        help=f"threads for fastloss, torch and sklearn (default: {fastloss.get_num_threads()})",
    )
    b.add_argument(
        "--dtype", choices=tuple(_DTYPES), default="both", help="float32, float64 or both (default)"
    )
    b.add_argument(
        "--loss",
        nargs="+",
        action="extend",
        metavar="NAME",
        help=f"losses to time (default: {', '.join(cases.default_losses())}); "
        f"available: {', '.join(available)}",
    )
    b.add_argument(
        "--shape",
        nargs="+",
        action="extend",
        type=_argtypes.shape,
        metavar="NxC",
        help="shapes to use for every selected loss instead of the defaults "
        "(e.g. 65536x1000; a flat N for elementwise losses)",
    )
    b.add_argument(
        "--repeat",
        type=_argtypes.positive_int,
        metavar="K",
        help="best of K (default 5, --quick 3; slow peers use at most 3)",
    )
    b.add_argument(
        "--passes",
        type=_argtypes.positive_int,
        metavar="P",
        help="time fastloss and the floors in P passes over all cases, keeping "
        "each row's best (default 2, --quick 1): a slow spell of a shared "
        "machine rarely covers the same case twice",
    )
    b.add_argument(
        "--skip",
        nargs="+",
        action="extend",
        choices=_PEERS + ("scaling",),
        metavar="PEER",
        help=f"peers not to time: {', '.join(_PEERS)}; 'scaling': no thread-"
        "scaling section (1 -> N threads and N Python threads on the "
        "compute-bound cases, timed when N > 1)",
    )
    b.add_argument(
        "--contention",
        action="store_true",
        help="end with the busy-machine section: a few representative calls on the run's "
        "threads and on 1 thread, idle and with (usable CPUs - 1) busy processes started "
        "by bench (medians; goal: busy, the threads at most 1.2x the 1-thread time)",
    )
    b.add_argument(
        "--gbdt",
        action="store_true",
        help="the gradient-boosting section: fastloss.gbdt gradient + Hessian (softmax 1M x 10, "
        "logloss and focal 10M rows) vs the NumPy custom objective and the memory floor "
        "(alone unless --loss is given)",
    )
    b.add_argument(
        "--dask",
        action="store_true",
        help="the scale-out section: fastloss.dask.evaluate of cross entropy over .npy shards "
        "(1 GB of float32 logits, --quick 128 MB) on a LocalCluster of 1 and 2 worker "
        "processes vs fastloss.evaluate in this process (needs dask and distributed; alone "
        "unless --loss is given)",
    )
    b.add_argument(
        "--contention-shrink", type=_argtypes.positive_int, default=1, help=argparse.SUPPRESS
    )
    b.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    b.set_defaults(subparser=b)
    return b


def _check_args(parser, args):
    """Errors argparse cannot see by itself: parser.error() exits with status 2."""
    available = cases.available_losses()
    losses = []
    for name in args.loss or []:
        if name not in cases.LOSSES:
            parser.error(
                f"argument --loss: unknown loss {name!r} (choose from {', '.join(available)})"
            )
        if name not in available:
            parser.error(
                f"argument --loss: {name!r} is not available in this fastloss "
                f"{fastloss.__version__} (available: {', '.join(available)})"
            )
        if name not in losses:
            losses.append(name)
    if args.shape:
        if not losses:  # the default losses that take every given shape (ctc_loss: T x N x C)
            losses = [
                name
                for name in cases.default_losses()
                if all(len(s) >= cases.KINDS[cases.LOSSES[name].kind].min_ndim for s in args.shape)
            ]
        for name in losses:
            kind = cases.KINDS[cases.LOSSES[name].kind]
            for shape in args.shape:
                if len(shape) < kind.min_ndim:
                    parser.error(
                        f"argument --shape: {cases.shape_str(shape)} has "
                        f"{len(shape)} dimension(s) but {name} needs at least "
                        f"{kind.min_ndim} (NxC); select losses with --loss"
                    )
    for option, path in (
        ("--json", args.json),
        ("--markdown", args.markdown),
        ("--plot", args.plot),
    ):
        if path is not None:
            folder = os.path.dirname(os.path.abspath(path))
            if os.path.isdir(path) or not os.path.isdir(folder):
                parser.error(
                    f"argument {option}: cannot write {path!r} (no such folder, or it is a folder)"
                )
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error(
                "argument --plot: matplotlib is not installed; install it with "
                "pip install 'fastloss[plot]' (or pip install matplotlib)"
            )
    return losses


def run(args):
    """Run `fastloss bench` for parsed arguments; returns the exit status."""
    losses = _check_args(args.subparser, args)
    cfg = runner.BenchConfig(
        losses=losses or None,
        shapes=args.shape,
        dtypes=_DTYPES[args.dtype],
        quick=args.quick,
        threads=args.threads,
        repeat=args.repeat,
        passes=args.passes,
        skip=tuple(args.skip or ()),
        contention=args.contention,
        contention_shrink=args.contention_shrink,
        gbdt=args.gbdt,
        dask=args.dask,
        seed=args.seed,
        command=args.command_line,
    )
    records = []
    status = 0
    try:
        doc = runner.run(cfg, records=records)
        # a failing fastloss call or a result that disagrees with the reference: exit 1
        if any(r["error"] for r in doc["results"] + doc["scaling"]) or not all(
            c["ok"] for c in doc["checks"]
        ):
            status = 1
    except KeyboardInterrupt:
        print("\ninterrupted: writing the measurements taken so far", file=sys.stderr)
        status = 130
        doc = {
            "schema": "fastloss-bench/1",
            "interrupted": True,
            "settings": {
                "quick": cfg.quick,
                "threads": cfg.threads,
                "repeat": cfg.repeat,
                "dtypes": list(cfg.dtypes),
            },
            "machine": machine.machine_facts(),
            "versions": machine.versions(),
            "fastloss_config": fastloss.config(),
            "results": records,
            "checks": [],
            "contention": None,
        }
    for path, write in ((args.json, report.write_json), (args.markdown, report.write_markdown)):
        if path:
            try:
                write(doc, path)
            except OSError as exc:
                print(f"fastloss bench: cannot write {path}: {exc}", file=sys.stderr)
                return 1
            print(f"wrote {path}")
    if args.plot:
        try:
            report.plot(doc, args.plot)
        except ImportError as exc:
            print(
                f"fastloss bench: --plot needs matplotlib ({exc}); install it with "
                "pip install 'fastloss[plot]'",
                file=sys.stderr,
            )
            return 1
        except OSError as exc:
            print(f"fastloss bench: cannot write {args.plot}: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {args.plot}")
    return status
