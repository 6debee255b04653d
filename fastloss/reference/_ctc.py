"""Pure-NumPy float64 reference ("oracle") of the connectionist temporal classification loss.

Arguments are canonical and already validated (``fastloss._ctc`` does that): ``x`` of shape
``(T, N, C)`` (log-probabilities, or logits with ``from_logits=True``), ``labels`` the targets
of every sample concatenated (int64), ``offsets[n]`` where sample ``n``'s labels start,
``input_lengths`` and ``target_lengths`` of shape ``(N,)``.

For one sample with labels ``l_1..l_S`` and ``T_n`` frames, the extended sequence is
``l' = (blank, l_1, blank, l_2, ..., l_S, blank)`` (``2S + 1`` states).  With ``y_t(c)`` the
log-probability of class ``c`` at frame ``t``, the forward variables are, in log space,

    alpha_0(0) = y_0(blank),  alpha_0(1) = y_0(l_1),  alpha_0(s) = -inf otherwise
    alpha_t(s) = y_t(l'_s) + logsumexp(alpha_{t-1}(s), alpha_{t-1}(s-1), [alpha_{t-1}(s-2)])

where the ``s - 2`` term exists only for a label state whose label differs from the label
two states back (a repeated label needs a blank between its copies).  The backward variables
``beta_t(s)`` (the log-probability of frames ``t+1..T_n-1`` from state ``s`` at frame ``t``)
follow the mirrored recursion from ``beta_{T_n-1}(2S) = beta_{T_n-1}(2S-1) = 0``.  The loss is
``-ll`` with ``ll = logsumexp(alpha_{T_n-1}(2S), alpha_{T_n-1}(2S-1))``; the state occupancy
``gamma_t(s) = exp(alpha_t(s) + beta_t(s) - ll)`` gives the gradients

    d loss / d y_t(c) = -sum_{s : l'_s = c} gamma_t(s)                (log-probabilities)
    d loss / d z_t(c) = softmax(z_t)(c) - sum_{s : l'_s = c} gamma_t(s)   (logits)

(the occupancies of a frame sum to 1).  Frames at or beyond ``T_n`` get gradient 0.  A sample
that no alignment can produce (``T_n`` too short for its labels and the blanks its repeats
need) has ``ll = -inf``: loss ``inf`` and, as torch, a NaN gradient on its frames, or loss 0
and gradient 0 with ``zero_infinity``.  ``T_n = 0`` with ``S = 0`` has loss 0.

Reductions are torch's: ``"none"`` the per-sample losses, ``"sum"`` their sum, ``"mean"``
the mean over the batch of each loss divided by its target length (lengths of 0 count as 1).
"""

import numpy as np


def _grad_scale(reduction, target_lengths, grad_output):
    """The per-sample multiplier of each sample's gradient (float64, shape (N,))."""
    N = target_lengths.shape[0]
    go = np.broadcast_to(np.asarray(1.0 if grad_output is None else grad_output, np.float64), (N,))
    if reduction == "mean":
        return go / (np.maximum(target_lengths, 1) * N)
    return go.astype(np.float64)


def log_softmax(z, axis=-1):
    """float64 log-softmax with the max-shift; a row whose maximum is not finite (a NaN, a
    +inf, or only -inf) is all NaN."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        m = np.max(z, axis=axis, keepdims=True)
        finite = np.isfinite(m)
        shifted = z - np.where(finite, m, 0.0)
        out = shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
        return np.where(finite, out, np.nan)


def _shift(v, k):
    """v moved k places toward higher indices (k < 0: lower), -inf where nothing moved in."""
    out = np.full_like(v, -np.inf)
    if abs(k) < v.shape[0]:
        if k > 0:
            out[k:] = v[:-k]
        else:
            out[:k] = v[-k:]
    return out


def _alignment(lp, ext, skip):
    """(alpha, beta, ll) of one sample: lp (T_n, C) float64 log-probabilities, ext the
    extended label sequence, skip[s] whether state s may come from state s - 2."""
    T, K = lp.shape[0], ext.shape[0]
    y = lp[:, ext]  # (T, K): each state's emission
    ninf = np.full(K, -np.inf)
    alpha = np.empty((T, K))
    a = ninf.copy()
    a[: min(2, K)] = y[0, : min(2, K)]
    alpha[0] = a
    for t in range(1, T):
        prev = alpha[t - 1]
        one, two = _shift(prev, 1), np.where(skip, _shift(prev, 2), -np.inf)
        alpha[t] = np.logaddexp(np.logaddexp(prev, one), two) + y[t]
    last = alpha[T - 1]
    ll = np.logaddexp(last[-1], last[-2]) if K > 1 else last[-1]
    beta = np.empty((T, K))
    b = ninf.copy()
    b[-min(2, K) :] = 0.0
    beta[T - 1] = b
    skip_next = np.zeros(K, bool)  # may state s jump to s + 2
    skip_next[: max(K - 2, 0)] = skip[2:]
    for t in range(T - 2, -1, -1):
        nxt = beta[t + 1] + y[t + 1]
        one, two = _shift(nxt, -1), np.where(skip_next, _shift(nxt, -2), -np.inf)
        beta[t] = np.logaddexp(np.logaddexp(nxt, one), two)
    return alpha, beta, ll


def ctc_loss(
    x,
    labels,
    offsets,
    input_lengths,
    target_lengths,
    *,
    blank=0,
    reduction="mean",
    zero_infinity=False,
    from_logits=False,
    grad_output=None,
    need_grad=False,
):
    """(loss, grad) of the CTC loss; ``grad`` (shaped like ``x``) is None unless ``need_grad``.
    See the module docstring."""
    x = np.asarray(x, np.float64)
    T, N, C = x.shape
    lp_all = log_softmax(x, axis=2) if from_logits else x
    nll = np.empty(N)
    grad = np.zeros((T, N, C)) if need_grad else None
    scale = _grad_scale(reduction, target_lengths, grad_output) if need_grad else None
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for n in range(N):
            Tn, S = int(input_lengths[n]), int(target_lengths[n])
            lab = np.asarray(labels[offsets[n] : offsets[n] + S], np.int64)
            ext = np.full(2 * S + 1, blank, np.int64)
            ext[1::2] = lab
            skip = np.zeros(2 * S + 1, bool)
            skip[3::2] = lab[1:] != lab[:-1]
            if Tn == 0:
                ll = 0.0 if S == 0 else -np.inf
                alpha = beta = None
            else:
                alpha, beta, ll = _alignment(lp_all[:Tn, n], ext, skip)
            infeasible = ll == -np.inf
            nll[n] = 0.0 if infeasible and zero_infinity else -ll
            if not need_grad or Tn == 0:
                continue
            if infeasible:
                if not zero_infinity:
                    grad[:Tn, n] = np.nan
                continue
            gamma = np.exp(alpha + beta - ll)  # (Tn, 2S + 1)
            g = np.zeros((Tn, C))
            for s in range(2 * S + 1):
                g[:, ext[s]] -= gamma[:, s]
            if from_logits:
                g += np.exp(lp_all[:Tn, n])
            grad[:Tn, n] = g * scale[n]
    if reduction == "none":
        loss = nll
    elif reduction == "sum":
        loss = np.sum(nll)
    else:
        loss = np.mean(nll / np.maximum(target_lengths, 1)) if N else np.nan
    return loss, grad
