"""Output of a benchmark run: the table printed as the measurements come in, the thread-scaling
table, and the JSON document (docs/bench-json.md), Markdown table and plot written from it."""

import math

import fastloss

from ... import _losses
from .._json import write_json
from . import trust
from .cases import shape_str

__all__ = [
    "Table",
    "format_time",
    "header_lines",
    "scaling_lines",
    "contention_lines",
    "write_json",
    "markdown",
    "write_markdown",
    "plot_panels",
    "plot",
]


def format_time(seconds):
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 10:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _fmt_ratio(r, digits=2):
    if r is None:
        return "-"
    if r >= 100:
        return f"{r:.0f}x"
    if r >= 10:
        return f"{r:.1f}x"
    return f"{r:.{digits}f}x"


# the cells a flag (trust.py) puts a "?" on: every cell computed from the untrustworthy time
_RESULT_CELLS = {
    "noisy:fastloss": ("fastloss", "ns/el", "x floor", "vs numpy", "vs torch", "vs sklearn"),
    "noisy:floor": ("floor", "x floor"),
    "noisy:numpy": ("vs numpy",),
    "noisy:torch": ("vs torch",),
    "noisy:sklearn": ("vs sklearn",),
}
_SCALING_CELLS = {
    "noisy:one_thread": ("1 thread", "speedup", "Py speedup"),
    "noisy:threads": ("N threads", "speedup"),
    "noisy:python_threads": ("Py threads", "Py speedup"),
}


def _mark(cells, names, rec, cells_of):
    """Cells with a "?" on those the record's flags make untrustworthy ("busy": all timed
    ones, i.e. every cell any flag can mark) and the footnote naming why ("" if none)."""
    marked = set()
    for flag in rec.get("flags") or ():
        if flag == "busy":
            marked.update(*cells_of.values())
        else:
            marked.update(cells_of.get(flag, ()))
    cells = [c + "?" if n in marked and c not in ("", "-") else c for c, n in zip(cells, names)]
    return cells, (f"  ? {trust.reasons(rec)}" if marked else "")


class Table:
    """Fixed-width table printed row by row as the measurements come in."""

    COLS = (
        ("loss", "<"),
        ("shape", "<"),
        ("dtype", "<"),
        ("mode", "<"),
        ("fastloss", ">"),
        ("ns/el", ">"),
        ("floor", ">"),
        ("x floor", ">"),
        ("vs numpy", ">"),
        ("vs torch", ">"),
        ("vs sklearn", ">"),
    )

    def __init__(self, out, loss_width, shape_width):
        self.out = out
        self.widths = [max(loss_width, 4), max(shape_width, 5), 7, 8, 10, 7, 10, 7, 8, 8, 10]

    def _line(self, cells):
        parts = []
        for (_name, align), width, cell in zip(self.COLS, self.widths, cells):
            parts.append(f"{cell:{align}{width}}")
        return " | ".join(parts).rstrip()

    def header(self):
        line = self._line([c[0] for c in self.COLS])
        print(line, file=self.out)
        print("-" * len(line), file=self.out)
        self.out.flush()

    def row(self, rec):
        if rec["error"]:
            cells = [
                rec["loss"],
                shape_str(rec["shape"]),
                rec["dtype"],
                rec["mode"],
                "ERROR",
                "",
                "",
                "",
                "",
                "",
                "",
            ]
            line = self._line(cells) + "  " + rec["error"][:100]
        else:
            ns = rec["ns_per_element"]
            cells = [
                rec["loss"],
                shape_str(rec["shape"]),
                rec["dtype"],
                rec["mode"],
                format_time(rec["fastloss_s"]),
                "-" if ns is None else f"{ns:.2f}",
                format_time(rec["floor_s"]),
                _fmt_ratio(rec["x_floor"]),
                _fmt_ratio(rec["vs_numpy"], 1),
                _fmt_ratio(rec["vs_torch"], 1),
                _fmt_ratio(rec["vs_sklearn"], 1),
            ]
            cells, note = _mark(cells, [c[0] for c in self.COLS], rec, _RESULT_CELLS)
            line = self._line(cells) + note
        print(line, file=self.out)
        self.out.flush()

    def note(self, text):
        print(f"    note: {text}", file=self.out)
        self.out.flush()


def header_lines(cfg, machine, vers, threads, torch):
    conf = fastloss.config()
    cpu = (
        f"CPU: {machine['cpu']} ({machine['logical_cpus']} logical CPUs, "
        f"{machine['usable_cpus']} usable, {machine['physical_cores'] or '?'} cores"
        f"{', cache ' + machine['cache'] if machine['cache'] else ''}; "
        f"{' '.join(machine['simd_flags']) or 'no SIMD flags listed'})"
    )
    if machine["memory_gib"]:
        cpu += f", {machine['memory_gib']} GiB RAM"
    fl = (
        f"fastloss {conf['version']}: backend {conf['backend']}, "
        f"OpenMP {'on' if conf['openmp'] else 'off'}, {threads} threads, "
        f"SIMD {conf['simd']} | numpy {vers['numpy']} | "
        f"torch {vers['torch'] or 'not available'}"
        f"{f' ({threads} threads)' if torch is not None else ''} | "
        f"scikit-learn {vers['sklearn'] or 'not available'} | python {vers['python']}"
    )
    how = (
        f"best of {cfg.repeat} wall times after a warm-up (reference/torch/sklearn: fewer); "
        "floors: single-threaded NumPy in the same run; x floor = fastloss / floor "
        "(1.00x = memory bound, lower is better); vs X = X time / fastloss time "
        "(speedup)"
    )
    modes = (
        "modes: loss = forward only (floor x.sum()); fwd+bwd = return_grad=True, "
        "allocating (floor np.copy); grad_out = into a preallocated buffer "
        "(floor np.copyto; vs sklearn: loss_gradient with preallocated outputs); "
        "fwd = softmax family output"
    )
    return [cpu, fl, how, modes]


def _text_table(head, rows, align, notes):
    """Fixed-width lines of a small table: the head, a rule, one line per row + its note."""
    widths = [max(len(str(row[i])) for row in rows + [head]) for i in range(len(head))]

    def line(cells):
        return " | ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths)).rstrip()

    out = [line(head)]
    out.append("-" * len(out[0]))
    out.extend(line(row) + note for row, note in zip(rows, notes))
    return out


_SCALING_NAMES = ("loss", "shape", "dtype", "mode", "1 thread", "N threads", "speedup")
_SCALING_NAMES += ("Py threads", "Py speedup")


def scaling_lines(records, threads):
    """The printed thread-scaling table."""
    head = (
        "loss",
        "shape",
        "dtype",
        "mode",
        "1 thread",
        f"{threads} threads",
        "speedup",
        f"{threads} Py threads",
        "speedup",
    )
    rows, notes = [], []
    for r in records:
        case = [r["loss"], shape_str(r["shape"]), r["dtype"], r["mode"]]
        if r["error"]:
            rows.append(case + ["ERROR", "", "", "", r["error"][:100]])
            notes.append("")
            continue
        cells, note = _mark(
            case
            + [
                format_time(r["one_thread_s"]),
                format_time(r["threads_s"]),
                _fmt_ratio(r["speedup"]),
                format_time(r["python_threads_s"]),
                _fmt_ratio(r["python_speedup"]),
            ],
            _SCALING_NAMES,
            r,
            _SCALING_CELLS,
        )
        rows.append(cells)
        notes.append(note)
    return _text_table(head, rows, "<<<<>>>>>", notes)


def contention_lines(section):
    """The printed busy-machine table (contention.run_section's result)."""
    n, k = section["threads"], section["busy_processes"]
    plural = "es" if k != 1 else ""
    out = [
        f"busy machine: float32 calls (loss only; softmax: its output), medians, on {n} threads "
        f"vs 1 thread, idle and with {k} busy process{plural} started by bench (goal: busy "
        f"{n} threads at most {section['goal_ratio']}x the 1-thread time):"
    ]
    if section["note"]:
        out.append(f"    note: {section['note']}")
    if not section["cases"]:
        return out
    head = ("loss", "shape", f"idle {n} thr", "1 thr", "ratio")
    head += (f"busy {n} thr", "1 thr", "ratio", "goal")
    rows = []
    for r in section["cases"]:
        case = [r["loss"], shape_str(r["shape"])]
        if r["error"]:
            rows.append(case + ["ERROR", "", "", "", "", "", r["error"][:100]])
            continue
        goal = {None: "-", True: "met", False: "MISSED"}[r["goal_met"]]
        rows.append(
            case
            + [
                format_time(r["idle_threads_s"]),
                format_time(r["idle_one_thread_s"]),
                _fmt_ratio(r["idle_ratio"]),
                format_time(r["busy_threads_s"]),
                format_time(r["busy_one_thread_s"]),
                _fmt_ratio(r["busy_ratio"]),
                goal,
            ]
        )
    out += _text_table(head, rows, "<<>>>>>><", [""] * len(rows))
    others = [
        f"{cond} {100 * section[cond + '_others_cpu']:.0f}%"
        for cond in ("idle", "busy")
        if section[cond + "_others_cpu"] is not None
    ]
    if others:
        out.append("share of the CPUs other processes used: " + ", ".join(others))
    return out


def markdown(doc):
    """The README's benchmark table: one row per loss x shape x dtype, with the fwd+bwd time,
    its floor ratio and speedups, the loss-only and grad_out times with their floor ratios,
    and scikit-learn's time over the grad_out call's (softmax-family rows show their single
    mode in the first columns); then the thread-scaling table, if the run measured one."""
    m, v, conf = doc["machine"], doc["versions"], doc["fastloss_config"]
    threads = doc["settings"]["threads"]
    lines = [
        f"One run of `{' '.join(doc.get('command') or ['fastloss', 'bench'])}` "
        f"({threads} threads, best of {doc['settings']['repeat']}): {m['cpu']}, "
        f"{m['logical_cpus']} logical CPUs, SIMD path {conf['simd']}, "
        f"{m['memory_gib']} GiB; NumPy {v['numpy']}, torch {v['torch'] or 'not installed'}, "
        f"scikit-learn {v['sklearn'] or 'not installed'}; other processes used "
        f"{100 * (doc.get('others_cpu_fraction') or 0):.0f}% of the CPUs during the run.",
        "",
        "| loss | shape | dtype | fwd+bwd | x floor | vs NumPy | vs torch | "
        "loss only (x floor) | grad_out (x floor) | grad_out vs sklearn |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def md_shape(shape):
        return shape_str(shape).replace("x", " x ")

    cases = {}
    for rec in doc["results"]:
        key = (rec["loss"], md_shape(rec["shape"]), rec["dtype"])
        cases.setdefault(key, {})[rec["mode"]] = rec

    def md_time(seconds):
        text = format_time(seconds)
        return text[:-3] + " µs" if text.endswith(" us") else text

    def timed(rec):
        if rec is None or rec.get("error"):
            return "-"
        return f"{md_time(rec['fastloss_s'])} ({_fmt_ratio(rec['x_floor'])})"

    def vs_sklearn(rec):
        if rec is None or rec.get("error") or rec.get("vs_sklearn") is None:
            return "-"
        return _fmt_ratio(rec["vs_sklearn"], 1)

    for (loss, shape, dtype), modes in cases.items():
        main = modes.get("fwd+bwd") or modes.get("fwd") or next(iter(modes.values()))
        if main.get("error"):
            cells = ["ERROR", "-", "-", "-"]
        else:
            cells = [
                md_time(main["fastloss_s"]),
                _fmt_ratio(main["x_floor"]),
                _fmt_ratio(main["vs_numpy"], 1),
                _fmt_ratio(main["vs_torch"], 1),
            ]
        lines.append(
            f"| `{loss}` | {shape} | {dtype} | "
            + " | ".join(cells)
            + f" | {timed(modes.get('loss'))} | {timed(modes.get('grad_out'))}"
            f" | {vs_sklearn(modes.get('grad_out'))} |"
        )
    scaling = [r for r in doc.get("scaling") or [] if not r.get("error")]
    if scaling:
        n = scaling[0]["threads"]
        lines += [
            "",
            f"Thread scaling of the compute-bound cases in the same run: fastloss on "
            f"1 and on {n} threads, and {n} Python threads each making the call (on one "
            f"thread) at once, with the speedup over the same {n} calls one after "
            "another.",
            "",
            f"| loss | shape | dtype | mode | 1 thread | {n} threads | speedup | "
            f"{n} Python threads | speedup |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in scaling:
            lines.append(
                f"| `{r['loss']}` | {md_shape(r['shape'])} | "
                f"{r['dtype']} | {r['mode']} | {md_time(r['one_thread_s'])} | "
                f"{md_time(r['threads_s'])} | {_fmt_ratio(r['speedup'])} | "
                f"{md_time(r['python_threads_s'])} | "
                f"{_fmt_ratio(r['python_speedup'])} |"
            )
    return "\n".join(lines) + "\n"


def write_markdown(doc, path):
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(markdown(doc))


_FAMILY_TITLES = {"class": "class losses", "elementwise": "elementwise losses"}
_FAMILY_TITLES["axis"] = "softmax family"
# what a panel shows: time / the row's memory floor, per series
_PLOT_SERIES = (("fastloss", "fastloss_s", "tab:blue"), ("torch", "torch_s", "tab:red"))
_PLOT_SERIES += (("sklearn", "sklearn_s", "tab:orange"),)
_PLOT_MARKERS = {"float32": "o", "float64": "s"}
PLOT_SIZE_IN = (16.0, 10.0)  # at most, at 100 dpi: 1600 x 1000 pixels
PLOT_DPI = 100


def _family(rec):
    spec = _losses.LOSSES.get(rec["loss"])
    return spec.family if spec is not None else rec["kind"]


def plot_panels(doc):
    """The panels of the plot: [(family, mode, [records])], families in registry order."""
    panels = {}
    for r in doc["results"]:
        if r.get("error") or not r.get("fastloss_s") or not r.get("floor_s"):
            continue
        panels.setdefault((_family(r), r["mode"]), []).append(r)
    order = list(_FAMILY_TITLES)
    return sorted(
        ((f, m, recs) for (f, m), recs in panels.items()),
        key=lambda p: order.index(p[0]) if p[0] in order else len(order),
    )


def plot(doc, path):
    """Small panels, one per loss family x mode (rows: families): each case's time over its
    memory floor (log scale; the floor is the line at 1x) for fastloss, torch and
    scikit-learn, float32 as circles and float64 as squares, flagged timings hollow.  At most
    PLOT_SIZE_IN inches at PLOT_DPI.  Returns the (closed) matplotlib figure.

    Needs matplotlib (the optional extra fastloss[plot]); raises ImportError otherwise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    panels = plot_panels(doc)
    families = list(dict.fromkeys(f for f, _, _ in panels))
    ncols = max([sum(f == fam for f, _, _ in panels) for fam in families] + [1])
    nrows = max(1, len(families))
    fig = plt.figure(
        figsize=(min(PLOT_SIZE_IN[0], 0.4 + 5.2 * ncols), min(PLOT_SIZE_IN[1], 1.0 + 3.0 * nrows))
    )
    grid = fig.add_gridspec(nrows, ncols)
    column = dict.fromkeys(families, 0)
    for family, mode, recs in panels:
        ax = fig.add_subplot(grid[families.index(family), column[family]])
        column[family] += 1
        _plot_panel(ax, family, mode, recs)
    threads = (doc.get("settings") or {}).get("threads", "?")
    fig.suptitle(
        f"fastloss {doc['versions']['fastloss']} on {doc['machine']['cpu']}, {threads} "
        "threads: time / memory floor (lower is better)",
        x=0.01,
        y=0.995,
        ha="left",
        va="top",
        fontsize=10,
    )
    handles = [Line2D([], [], color=c, marker="o", ls="", label=n) for n, _, c in _PLOT_SERIES]
    handles += [
        Line2D([], [], color="gray", marker=m, ls="", label=d) for d, m in _PLOT_MARKERS.items()
    ]
    handles += [
        Line2D([], [], color="gray", marker="o", mfc="none", ls="", label="? flagged"),
        Line2D([], [], color="black", ls="--", lw=1, label="memory floor"),
    ]
    fig.legend(handles=handles, loc="upper right", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    fig.savefig(path, dpi=PLOT_DPI)
    plt.close(fig)
    return fig


def _plot_panel(ax, family, mode, recs):
    # one x position per (loss, shape), grouped by loss; float32 and float64 side by side
    cases = sorted(
        dict.fromkeys((r["loss"], shape_str(r["shape"])) for r in recs),
        key=lambda c: [r["loss"] for r in recs].index(c[0]),
    )
    losses = list(dict.fromkeys(loss for loss, _ in cases))
    shapes = {shape for _, shape in cases}
    title = f"{_FAMILY_TITLES.get(family, family)}: {mode}"
    if len(shapes) == 1:
        title += f", {next(iter(shapes))}"
        labels = [loss for loss, _ in cases]
    else:
        labels = [shape for _, shape in cases]
        if len(losses) == 1:
            title += f", {losses[0]}"
        else:  # the loss of each group of shapes, over it, and a line between groups
            for loss in losses:
                xs = [i for i, (name, _) in enumerate(cases) if name == loss]
                ax.text(
                    (xs[0] + xs[-1]) / 2,
                    1.01,
                    loss,
                    transform=ax.get_xaxis_transform(),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
                if xs[0]:
                    ax.axvline(xs[0] - 0.5, color="gray", lw=0.6)
    dtypes = list(dict.fromkeys(r["dtype"] for r in recs))
    for r in recs:
        x = cases.index((r["loss"], shape_str(r["shape"])))
        x += 0.3 * (dtypes.index(r["dtype"]) - (len(dtypes) - 1) / 2)
        flags = r.get("flags") or ()
        for k, (name, key, color) in enumerate(_PLOT_SERIES):
            if r.get(key) is None:
                continue
            hollow = "busy" in flags or f"noisy:{name}" in flags or "noisy:floor" in flags
            ax.plot(
                x + 0.08 * (k - 1),
                r[key] / r["floor_s"],
                ls="",
                marker=_PLOT_MARKERS.get(r["dtype"], "D"),
                color=color,
                mfc="none" if hollow else color,
                ms=5,
            )
    ax.axhline(1.0, color="black", ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_xlim(-0.6, len(cases) - 0.4)
    ax.set_xticks(range(len(cases)))
    rotated = len(cases) > 3
    ax.set_xticklabels(
        labels, fontsize=7, rotation=30 if rotated else 0, ha="right" if rotated else "center"
    )
    ax.set_title(title, fontsize=9, pad=14 if len(losses) > 1 and len(shapes) > 1 else 6)
    ax.set_ylabel("time / floor", fontsize=8)
    ax.tick_params(axis="both", which="both", labelsize=7)
    ax.grid(axis="y", which="major", alpha=0.4)
    ax.grid(axis="y", which="minor", alpha=0.12)
