"""Output of a benchmark run: the table printed as the measurements come in, the thread-scaling
table, and the JSON document (docs/bench-json.md), Markdown table and plot written from it."""

import math

import fastloss

from .._json import write_json
from .cases import shape_str

__all__ = [
    "Table",
    "format_time",
    "header_lines",
    "scaling_lines",
    "write_json",
    "markdown",
    "write_markdown",
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
            line = self._line(cells)
        if rec.get("others_cpu") is not None and rec["others_cpu"] > 0.1:
            line += f"  busy {100 * rec['others_cpu']:.0f}%"
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
    rows = []
    for r in records:
        if r["error"]:
            rows.append(
                (
                    r["loss"],
                    shape_str(r["shape"]),
                    r["dtype"],
                    r["mode"],
                    "ERROR",
                    "",
                    "",
                    "",
                    r["error"][:100],
                )
            )
            continue
        rows.append(
            (
                r["loss"],
                shape_str(r["shape"]),
                r["dtype"],
                r["mode"],
                format_time(r["one_thread_s"]),
                format_time(r["threads_s"]),
                _fmt_ratio(r["speedup"]),
                format_time(r["python_threads_s"]),
                _fmt_ratio(r["python_speedup"]),
            )
        )
    widths = [max(len(str(row[i])) for row in rows + [head]) for i in range(len(head))]
    align = "<<<<>>>>>"

    def line(cells):
        return " | ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths)).rstrip()

    out = [line(head)]
    out.append("-" * len(out[0]))
    out.extend(line(row) for row in rows)
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


def plot(doc, path):
    """Horizontal bars of ns per element: fastloss vs its floor vs torch, one group per case.

    Needs matplotlib (the optional extra fastloss[plot]); raises ImportError otherwise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in doc["results"] if r["fastloss_s"] is not None and r["elements"]]
    labels = [f"{r['loss']} {shape_str(r['shape'])} {r['dtype']} {r['mode']}" for r in recs]
    per = lambda s, r: None if s is None else s / r["elements"] * 1e9  # noqa: E731
    series = (
        ("fastloss", [per(r["fastloss_s"], r) for r in recs], "tab:blue"),
        ("memory floor", [per(r["floor_s"], r) for r in recs], "tab:gray"),
        ("torch", [per(r["torch_s"], r) for r in recs], "tab:red"),
    )
    height = 0.27
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.45 * max(1, len(recs))))
    for k, (label, values, color) in enumerate(series):
        ys = [i + (k - 1) * height for i, v in enumerate(values) if v is not None]
        vs = [v for v in values if v is not None]
        if vs:
            ax.barh(ys, vs, height=height, label=label, color=color)
    ax.set_yticks(range(len(recs)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ns per element (log scale, lower is better)")
    threads = doc["settings"]["threads"] if doc.get("settings") else "?"
    ax.set_title(
        f"fastloss {doc['versions']['fastloss']} on {doc['machine']['cpu']}, {threads} threads",
        fontsize=9,
    )
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
