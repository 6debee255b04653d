"""Which timings of a run can be trusted: the criteria, the flags they put on a row, and the
one summary line that ends a run (docs/bench-json.md lists the flags; docs/performance.md
says why these criteria).

A row is flagged when one of the times it is made of is not trustworthy:

* ``noisy:<timed>``: the median of that time's measurements is more than SPREAD_LIMIT times
  its best (``Timing.spread``).  The tables report the best of K, which is right when most
  measurements agree with it; when the typical one took 1.5x longer the machine was
  preempting the calls, and the best may be inflated too (or, for a peer timed only 2-3
  times, be a lucky one).  ``<timed>`` is ``fastloss``, ``floor``, ``numpy``, ``torch`` or
  ``sklearn`` (the scaling section: ``one_thread``, ``threads``, ``python_threads``);
* ``busy``: other processes used more than BUSY_FRACTION of the usable CPUs while the case
  ran (``CpuWatch``): a multi-threaded call waits for its slowest thread, so every time of the
  case is inflated, most of all the N-thread ones.

The timer's resolution cannot make a row untrustworthy: every timed interval lasts at least
``timing.MIN_TICKS`` ticks of the clock (short calls are timed in inner loops).  A time with
one measurement only has no spread and is not judged by it.
"""

__all__ = [
    "SPREAD_LIMIT",
    "BUSY_FRACTION",
    "LOAD_PER_CPU",
    "flag_record",
    "machine_busy",
    "summary_line",
]

SPREAD_LIMIT = 1.5  # median / best of a time's measurements
BUSY_FRACTION = 0.10  # share of the usable CPUs that other processes used during a case
LOAD_PER_CPU = 0.25  # 1-minute load average per usable CPU before the run


def flag_record(rec, spreads):
    """Set a result or scaling record's ``flags`` (list of codes) and ``trust`` ("ok" or
    "flagged") from the spreads of its times ({timed: spread or None}) and its
    ``others_cpu``; returns the record."""
    flags = [
        f"noisy:{timed}"
        for timed, spread in spreads.items()
        if spread is not None and spread > SPREAD_LIMIT
    ]
    others = rec.get("others_cpu")
    if others is not None and others > BUSY_FRACTION:
        flags.append("busy")
    rec["flags"] = flags
    rec["trust"] = "flagged" if flags else "ok"
    return rec


def reasons(rec):
    """The flags of a record in words, e.g. 'torch spread 3.4x, busy 23%'."""
    words = []
    for flag in rec.get("flags") or ():
        if flag == "busy":
            words.append(f"busy {100 * rec['others_cpu']:.0f}%")
        else:
            timed = flag.split(":", 1)[1]
            spread = (rec.get("spread") or {}).get(timed)
            words.append(f"{timed} spread {spread:.2f}x" if spread else f"{timed} noisy")
    return ", ".join(words)


def machine_busy(doc):
    """Whether the whole run shared the machine: other processes used more than
    BUSY_FRACTION of the CPUs during it; where that was not measured, the load average
    before it exceeded LOAD_PER_CPU per usable CPU (a 1-minute average: it still counts
    whatever ran just before, so it is only the fallback)."""
    others = doc.get("others_cpu_fraction")
    if others is not None:
        return others > BUSY_FRACTION
    load = (doc.get("machine") or {}).get("load_average_start")
    return load is not None and load[0] > LOAD_PER_CPU * _cpus(doc)


def _cpus(doc):
    m = doc.get("machine") or {}
    return m.get("usable_cpus") or m.get("logical_cpus") or 1


def summary_line(doc):
    """The line that ends a run: how many rows, how many flagged and why, the load."""
    rows = doc["results"]
    scaling = doc.get("scaling") or []
    judged = [r for r in rows + scaling if not r.get("error")]
    flagged = [r for r in judged if r.get("flags")]
    noisy = sum(any(f.startswith("noisy:") for f in r["flags"]) for r in flagged)
    busy = sum("busy" in r["flags"] for r in flagged)
    text = f"{len(rows)} rows" + (f" + {len(scaling)} thread-scaling rows" if scaling else "")
    if doc.get("elapsed_s") is not None:
        text += f" in {doc['elapsed_s']:.0f} s"
    if flagged:
        why = []
        if noisy:
            why.append(f"{noisy} noisy (a spread > {SPREAD_LIMIT}x)")
        if busy:
            why.append(f"{busy} busy (others > {100 * BUSY_FRACTION:.0f}% of the CPUs)")
        text += f", {len(flagged)} flagged ?: " + ", ".join(why)
    else:
        text += ", none flagged"
    facts = []
    load = (doc.get("machine") or {}).get("load_average_start")
    if load is not None:
        facts.append(f"load avg {load[0]:.1f} on {_cpus(doc)} CPUs")
    others = doc.get("others_cpu_fraction")
    if others is not None:
        facts.append(f"others used {100 * others:.0f}% of the CPUs")
    if facts:
        text += "; " + ", ".join(facts)
    if machine_busy(doc) or len(flagged) > len(judged) // 10:
        text += ": rerun on an idle machine"
    elif flagged:
        text += ": treat the ? cells with care"
    return text
