"""Benchmark engine behind ``fastloss bench`` (the subcommand: ``command.py``).

How speed is measured (docs/performance.md): absolute times drift on shared machines, so every
number is compared with others taken in the SAME run:

* the memory floor of the same shape and dtype, measured right before the case:
  ``x.sum()`` (one read: the floor of a loss-only call), ``np.copy(x)`` (read + write into a fresh
  allocation: the floor of a call that allocates its gradient), ``np.copyto(buf, x)`` (read +
  write into a preallocated buffer: the floor of a call with ``grad_out=``).  A loss that also
  reads a target array has its floor scaled by the extra bytes it must read (``floor_factor``):
  same-sized float targets give x2.0 on the read floor and x1.5 on the copy floors, int64 class
  indices add 8 bytes per row;
* the NumPy reference twin ``fastloss.reference.<name>`` (same call);
* ``torch.nn.functional`` (forward under ``no_grad``; forward+backward with autograd) on
  ``torch.from_numpy`` views with ``torch.set_num_threads`` at the same thread count;
* scikit-learn's ``_loss`` module, ``loss_gradient`` with preallocated outputs at the same thread
  count, where it has the loss: ``HalfMultinomialLoss`` for ``cross_entropy``,
  ``HalfBinomialLoss`` for ``binary_cross_entropy_with_logits``, ``HalfSquaredError`` for
  ``mse_loss``, ``AbsoluteError`` for ``l1_loss`` and ``HuberLoss(delta=...)`` for
  ``huber_loss`` (per-element losses and gradients, no reduction: timed against the
  ``grad_out`` call).

With more than one thread, a last section measures the thread scaling of the compute-bound
cases (``scaling_cases``: the small-C class losses and the sigmoid focal loss): each call on
one thread and on N threads, and N Python threads each making the call on one thread at once
against the same N calls one after another (which proves the GIL is released).

Times are best-of-K ``time.perf_counter`` wall times after one warm-up call; tiny calls are
repeated in an inner loop so that one measurement lasts at least a few milliseconds.  A full
run makes two passes (``--passes``): after all cases, fastloss and the floors are timed again
on fresh inputs of the same kind, and each row keeps its best fastloss and best floor time (a
slow spell of a shared VM, which can last seconds, rarely hits the same case in both).

Every time keeps the median of its measurements too: a row whose median is more than 1.5x
its best, or during which other processes used more than 10% of the CPUs, is flagged (a
``?`` on its cells, ``flags`` in the JSON; ``trust``), and the run ends with one summary
line.  ``--contention`` adds the busy-machine section (``contention``): a few calls on N and
on 1 thread, idle and with busy processes that bench starts.

The modules: ``cases`` (the loss and kind tables, input makers), ``timing`` (``sample``,
``measure``, ``python_threads_time``, ``CpuWatch``), ``trust`` (which timings are flagged,
the summary line), ``machine`` (machine facts, versions of the peers), ``runner`` (``run``:
the cases, the passes, the thread scaling), ``contention`` (the busy-machine section),
``report`` (the printed tables, JSON, Markdown, plot) and ``command`` (the ``fastloss
bench`` subcommand).  The JSON
document written by ``fastloss bench --json FILE`` is described in docs/bench-json.md.
"""
