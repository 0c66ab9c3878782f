"""Float64 NumPy references for the RL tests (imported by them; tests/rl is on sys.path)."""

import numpy as np


def numpy_vtrace(log_rhos, discounts, rewards, values, bootstrap, clip_rho=1.0, clip_c=1.0, clip_pg_rho=1.0):
    """The paper's definitions, one trajectory at a time, backwards over time, in float64."""
    log_rhos, discounts, rewards, values, bootstrap = (np.asarray(x, np.float64) for x in
                                                       (log_rhos, discounts, rewards, values, bootstrap))
    clip = lambda x, c: x if c is None else np.minimum(c, x)  # noqa: E731
    vs, adv = np.zeros_like(values), np.zeros_like(values)
    for b in range(values.shape[0]):
        rho = np.exp(log_rhos[b])
        v_next_traced = bootstrap[b]             # vs_{t+1}
        v_next = bootstrap[b]                    # V_{t+1}
        for t in reversed(range(values.shape[1])):
            delta = clip(rho[t], clip_rho) * (rewards[b, t] + discounts[b, t] * v_next - values[b, t])
            vs[b, t] = values[b, t] + delta + discounts[b, t] * clip(rho[t], clip_c) * (v_next_traced - v_next)
            adv[b, t] = clip(rho[t], clip_pg_rho) * (rewards[b, t] + discounts[b, t] * v_next_traced - values[b, t])
            v_next_traced, v_next = vs[b, t], values[b, t]
    return vs, adv


def log_softmax(x):
    """log softmax over the last axis, in float64."""
    x = np.asarray(x, np.float64)
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
