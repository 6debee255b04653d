"""``fastloss eval``: a loss and accuracies over .npy/.npz prediction files, with
``fastloss.evaluate`` (the options, the report table, the exit status)."""

import argparse
import math
import pickle
import sys
import zipfile
import zlib

from .._evaluate import LOSSES, _OptionProblem, evaluate
from . import _json
from ._argtypes import cli_float, positive_int

__all__ = ["add_parser", "run", "format_report"]

MAX_TABLE_CLASSES = 20  # more classes than this: the table shows the worst 10
WORST_SHOWN = 10


def to_json(doc):
    """The document as strict JSON (NaN and infinities become null)."""
    return _json.dumps(doc, indent=2)


def _g(v):
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.7g}"


def _pct(v):
    return "n/a" if v is None or math.isnan(v) else f"{100 * v:.2f}%"


def format_report(doc):
    """The human-readable table printed by ``fastloss eval``."""
    lines = []
    shown = [f"{k}={v}" for k, v in doc["options"].items() if k != "reduction"]

    def source(role):
        path = doc["files"].get(role)
        name = repr(path) if path is not None else "<array>"
        return (
            f"{name}  shape ({', '.join(map(str, doc['shapes'][role]))}"
            f"{',' if len(doc['shapes'][role]) == 1 else ''}) {doc['dtypes'][role]}"
        )

    lines.append(f"fastloss eval: {doc['loss']}" + (f" ({', '.join(shown)})" if shown else ""))
    lines.append(f"  logits   {source('logits')}")
    lines.append(f"  targets  {source('targets')}")
    lines.append("")
    rows = [(f"loss ({doc['reduction']})", _g(doc["value"]))]
    for red in ("mean", "sum", "batchmean"):
        if red != doc["reduction"] and red in doc:
            rows.append((red, _g(doc[red])))
    what = "elements" if doc["target_kind"] == "elementwise" else "samples"
    count = f"{doc['n_samples']}"
    if doc["target_kind"] == "index" and "ignore_index" in doc["options"]:
        count += f" ({doc['n_ignored']} ignored)"
    rows.append((what, count))
    if doc["accuracy"] is not None:
        label = "accuracy (top-1)" if doc["target_kind"] == "index" else "accuracy (at 0.5)"
        rows.append((label, _pct(doc["accuracy"])))
        rows.append(("error rate", _pct(doc["error_rate"])))
    for k, v in (doc["top_k_accuracy"] or {}).items():
        rows.append((f"top-{k} accuracy", _pct(v)))
    if doc.get("mean_entropy") is not None:
        rows.append(("mean entropy", f"{_g(doc['mean_entropy'])} nats"))
    if doc["files"].get("per_sample"):
        rows.append(("per-sample losses", repr(doc["files"]["per_sample"])))
    chunks = "chunk" if doc["n_chunks"] == 1 else "chunks"
    rows.append(
        (
            "elapsed",
            f"{doc['elapsed_s']:.3f} s ({doc['n_chunks']} {chunks} of up to "
            f"{doc['chunk_rows']} rows, {doc['threads']} threads)",
        )
    )
    width = max(len(r[0]) for r in rows)
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]

    per_class = doc["per_class"]
    if per_class:
        lines.append("")
        n = len(per_class)
        if n > MAX_TABLE_CLASSES:

            def badness(r):
                m = r["mean_loss"]
                return math.inf if math.isnan(m) else m

            shown_rows = sorted(per_class, key=badness, reverse=True)[:WORST_SHOWN]
            lines.append(
                f"  per class: the {WORST_SHOWN} classes with the highest mean loss, "
                f"of {n} classes present (--json lists all)"
            )
        else:
            shown_rows = per_class
            lines.append(f"  per class ({n} classes present)")
        lines.append(f"  {'class':>8}  {'count':>10}  {'mean loss':>12}  {'accuracy':>9}")
        for r in shown_rows:
            lines.append(
                f"  {r['class']:>8}  {r['count']:>10}  {_g(r['mean_loss']):>12}  "
                f"{_pct(r['accuracy']):>9}"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------- command line

_EPILOG = """\
Inputs are .npy files (memory-mapped) or .npz archives (--logits-key / --targets-key pick an
array when a .npz holds several; uncompressed members are memory-mapped, compressed members
are decompressed chunk by chunk).  They are read in chunks of rows (about 64 MB of logits per
chunk; --chunk-rows N to choose), so memory stays flat whatever the file size (for C-ordered
arrays: a chunk of rows of a Fortran-ordered array is scattered over the whole file).

Reported: the loss's mean (exactly fastloss.<loss>(..., reduction="mean") on the whole
arrays: for class-index targets the sum of weight[target] over non-ignored samples is the
divisor) and sum; for class-index targets top-1 and top-k accuracy (ranks follow
numpy.argmax: ties go to the lower class index) and per-class count, mean loss and accuracy
(over non-ignored samples; every position of (N, C, d1, ...) logits is a sample) and the mean
entropy of softmax(logits) over the same samples, in nats; for binary losses the accuracy at
threshold 0.5 of sigmoid(input) (of input for binary_cross_entropy) against target > 0.5.
multi_margin_loss takes class indices and is reported as the class losses (its mean is the
plain mean over rows, class weights or not); multilabel_margin_loss (class index lists ended
by -1) and multilabel_soft_margin_loss (0/1 or soft labels) take targets of the scores' shape
(N, C) and report the loss only.

Exit status: 0 on success, 1 for a problem with the data (corrupt or truncated file, shapes
or dtypes that do not match, targets out of range), 2 for a usage problem (bad or
inapplicable option, unknown loss, missing file), 130 when interrupted.
"""


class _EvalParser(argparse.ArgumentParser):
    """`fastloss eval`'s parser: one-line errors, unknown arguments reported by this parser."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def add_parser(subparsers):
    """Register the `eval` subcommand on fastloss.cli's subparsers (built by
    fastloss.cli._subparser, which takes the parser class)."""
    p = subparsers.add_parser(
        "eval",
        parser_class=_EvalParser,
        help="evaluate a loss and accuracies over .npy/.npz prediction files",
        description="Evaluate a fastloss loss over whole prediction files, chunk by chunk: "
        "mean and sum, accuracies and per-class statistics.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--loss",
        required=True,
        choices=LOSSES,
        metavar="NAME",
        help=f"the loss: {', '.join(LOSSES)}",
    )
    p.add_argument(
        "--logits",
        required=True,
        metavar="FILE",
        help="predictions (.npy or .npz): logits, log-probabilities for nll_loss "
        "and kl_div, probabilities for binary_cross_entropy",
    )
    p.add_argument(
        "--targets",
        required=True,
        metavar="FILE",
        help="targets (.npy or .npz): class indices, or probabilities shaped like the logits "
        "(multilabel losses: index lists or labels shaped like the scores)",
    )
    p.add_argument("--logits-key", metavar="KEY", help="array to use in a .npz logits file")
    p.add_argument("--targets-key", metavar="KEY", help="array to use in a .npz targets file")
    p.add_argument(
        "--weight",
        metavar="FILE",
        help="class weights (C,) for class losses, multi_margin_loss and "
        "multilabel_soft_margin_loss; elementwise weights for BCE",
    )
    p.add_argument(
        "--pos-weight", metavar="FILE", help="pos_weight for binary_cross_entropy_with_logits"
    )
    p.add_argument(
        "--ignore-index",
        type=int,
        metavar="N",
        help="target value to ignore (class losses; default -100)",
    )
    p.add_argument(
        "--label-smoothing",
        type=cli_float,
        metavar="E",
        help="cross_entropy's label smoothing in [0, 1]",
    )
    p.add_argument(
        "--gamma",
        type=cli_float,
        metavar="G",
        help="focal_loss / sigmoid_focal_loss gamma (default 2)",
    )
    p.add_argument(
        "--alpha",
        type=cli_float,
        metavar="A",
        help="sigmoid_focal_loss alpha (default 0.25; < 0 disables)",
    )
    p.add_argument("--beta", type=cli_float, metavar="B", help="smooth_l1_loss beta (default 1)")
    p.add_argument("--delta", type=cli_float, metavar="D", help="huber_loss delta (default 1)")
    p.add_argument(
        "--log-target",
        action="store_const",
        const=True,
        help="kl_div: the targets are log-probabilities",
    )
    p.add_argument(
        "--rates",
        dest="log_input",
        action="store_const",
        const=False,
        help="poisson_nll_loss: the predictions are rates, not log rates (log_input=False)",
    )
    p.add_argument(
        "--full",
        action="store_const",
        const=True,
        help="poisson_nll_loss: add the Stirling term of log(t!)",
    )
    p.add_argument("--eps", type=cli_float, metavar="E", help="poisson_nll_loss eps (default 1e-8)")
    p.add_argument(
        "--margin",
        type=cli_float,
        metavar="M",
        help="hinge_embedding_loss / multi_margin_loss margin (default 1)",
    )
    p.add_argument(
        "--p",
        type=positive_int,
        metavar="P",
        help="multi_margin_loss exponent: 1 or 2 (default 1)",
    )
    p.add_argument(
        "--reduction",
        default="mean",
        choices=("mean", "sum", "batchmean"),
        help="the reduction reported as the loss (default mean; batchmean: kl_div)",
    )
    p.add_argument(
        "--top-k",
        nargs="+",
        action="extend",
        type=positive_int,
        metavar="K",
        help="top-k accuracies to report (default 5 when there are more than 5 classes)",
    )
    p.add_argument(
        "--chunk-rows",
        type=positive_int,
        metavar="N",
        help="rows per chunk (default: about 64 MB of logits)",
    )
    p.add_argument(
        "--per-sample",
        metavar="OUT.npy",
        help="write the per-sample losses (reduction='none') to OUT.npy",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="threads for fastloss (default: fastloss.get_num_threads())",
    )
    p.add_argument(
        "--scheduler",
        metavar="WHERE",
        help="evaluate row blocks as Dask tasks: 'threads', 'processes', 'synchronous' or a "
        "distributed scheduler address (host:port); logits/targets may then be globs of .npy "
        "shards or .zarr stores (needs fastloss[dask])",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (shown on a terminal when tqdm is installed)",
    )
    p.set_defaults(subparser=p)
    return p


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


def run(args):
    """Run `fastloss eval` for parsed arguments; returns the exit status."""
    prog = "fastloss eval"
    progress = not args.no_progress and _isatty(sys.stderr)
    try:
        if args.scheduler is not None:
            return _run_scheduled(args, prog)
        doc = evaluate(
            args.loss,
            args.logits,
            args.targets,
            weight=args.weight,
            pos_weight=args.pos_weight,
            ignore_index=args.ignore_index,
            label_smoothing=args.label_smoothing,
            gamma=args.gamma,
            alpha=args.alpha,
            beta=args.beta,
            delta=args.delta,
            log_target=args.log_target,
            log_input=args.log_input,
            full=args.full,
            eps=args.eps,
            margin=args.margin,
            p=args.p,
            reduction=args.reduction,
            top_k=args.top_k,
            chunk_rows=args.chunk_rows,
            per_sample=args.per_sample,
            logits_key=args.logits_key,
            targets_key=args.targets_key,
            threads=args.threads,
            progress=progress,
        )
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (_OptionProblem, FileNotFoundError, IsADirectoryError) as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (
        ValueError,
        TypeError,
        IndexError,
        OSError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
        pickle.UnpicklingError,
    ) as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    print(to_json(doc) if args.json else format_report(doc))
    return 0


def _run_scheduled(args, prog):
    """fastloss eval --scheduler: fastloss.dask.evaluate with the same options and report."""
    try:
        from .. import dask as fdask
    except ImportError as exc:
        print(
            f"{prog}: error: --scheduler needs dask ({exc}); pip install 'fastloss[dask]'",
            file=sys.stderr,
        )
        return 2
    options = {k: v for k, v in vars(args).items() if k in _LOSS_OPTIONS and v is not None}
    scheduler = args.scheduler
    client = None
    if scheduler not in ("threads", "processes", "synchronous", "single-threaded", "sync"):
        from distributed import Client

        client = Client(scheduler)
        scheduler = client
    try:
        doc = fdask.evaluate(
            args.loss,
            args.logits,
            args.targets,
            reduction=args.reduction,
            top_k=args.top_k,
            per_sample=args.per_sample,
            scheduler=scheduler,
            threads=args.threads or 1,
            **options,
        )
    finally:
        if client is not None:
            client.close()
    print(to_json(doc) if args.json else format_report(doc))
    return 0


_LOSS_OPTIONS = (
    "weight",
    "pos_weight",
    "ignore_index",
    "label_smoothing",
    "gamma",
    "alpha",
    "beta",
    "delta",
    "log_target",
    "log_input",
    "full",
    "eps",
    "margin",
    "p",
)


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
