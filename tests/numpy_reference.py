"""Independent float64 NumPy loops for every variant, written from PAPER_SPEC.md section 2
(not from the JAX code). One explicit loop over batch, head and time; plain matrices
`W[key, value]` read as `W.T @ q`.

Each function takes arrays in the op layout (`[B, T, H, ...]`) and an optional initial state
(a dict of field -> array) and returns `(outputs, final state dict)`.
"""

from __future__ import annotations

import numpy as np


def _f64(*xs):
    return [np.asarray(x, np.float64) for x in xs]


def elu1(x):
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))


def sumnorm(x, eps=0.0):
    return x / (x.sum() + eps)


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def softmax_eps(x):
    e = np.exp(x - x.max())
    return e / (e.sum() + 1e-6)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def delta_write(W, k, v, beta):
    v_old = W.T @ k
    return W + np.outer(k, beta * (v - v_old))


def _init(state, field, shape):
    return np.zeros(shape) if state is None else np.array(state[field], np.float64)


def linear_transformer(q, k, v, *, normalize=False, eps=1e-5, state=None):
    q, k, v = _f64(q, k, v)
    B, T, H, K = q.shape
    V = v.shape[-1]
    W = _init(state, "W", (B, H, K, V))
    z = _init(state, "z", (B, H, K))
    out = np.zeros((B, T, H, V))
    for b in range(B):
        for h in range(H):
            for t in range(T):
                W[b, h] += np.outer(k[b, t, h], v[b, t, h])
                z[b, h] += k[b, t, h]
                o = W[b, h].T @ q[b, t, h]
                if normalize:
                    o = o / (z[b, h] @ q[b, t, h] + eps)
                out[b, t, h] = o
    return out, {"W": W, "z": z}


def delta_net(q, k, v, beta, *, state=None):
    q, k, v, beta = _f64(q, k, v, beta)
    B, T, H, K = q.shape
    V = v.shape[-1]
    W = _init(state, "W", (B, H, K, V))
    out = np.zeros((B, T, H, V))
    for b in range(B):
        for h in range(H):
            for t in range(T):
                W[b, h] = delta_write(W[b, h], k[b, t, h], v[b, t, h], beta[b, t, h])
                out[b, t, h] = W[b, h].T @ q[b, t, h]
    return out, {"W": W}


def gated_delta_net(q, k, v, beta, g, *, state=None):
    # The paper's transition form, W_t = a_t (I - beta_t k_t k_t^T) W_{t-1} + beta_t k_t v_t^T,
    # a_t = exp(g_t): the same as decaying first and then a delta write that reads the decayed W.
    q, k, v, beta, g = _f64(q, k, v, beta, g)
    B, T, H, K = q.shape
    V = v.shape[-1]
    W = _init(state, "W", (B, H, K, V))
    out = np.zeros((B, T, H, V))
    for b in range(B):
        for h in range(H):
            for t in range(T):
                kt, bt = k[b, t, h], beta[b, t, h]
                transition = np.exp(g[b, t, h]) * (np.eye(K) - bt * np.outer(kt, kt))
                W[b, h] = transition @ W[b, h] + bt * np.outer(kt, v[b, t, h])
                out[b, t, h] = W[b, h].T @ q[b, t, h]
    return out, {"W": W}


def delta_delta_net(q, k, v, beta, *, eps=1e-5, state=None):
    q, k, v, beta = _f64(q, k, v, beta)
    B, T, H, K = q.shape
    P = v.shape[-1]
    d = (P - 1) // 3
    W1 = np.zeros((B, H, K, P)) if state is None else np.array(state["W"][0], np.float64)
    W2 = np.zeros((B, H, d, d)) if state is None else np.array(state["W"][1], np.float64)
    out = np.zeros((B, T, H, d))
    for b in range(B):
        for h in range(H):
            for t in range(T):
                W1[b, h] = delta_write(W1[b, h], k[b, t, h], v[b, t, h], beta[b, t, h])
                p = W1[b, h].T @ q[b, t, h]
                q2 = sumnorm(elu1(p[:d]), eps)
                k2 = sumnorm(elu1(p[d:2 * d]), eps)
                v2 = p[2 * d:3 * d]
                beta2 = sigmoid(p[3 * d])
                W2[b, h] = delta_write(W2[b, h], k2, v2, beta2)
                out[b, t, h] = W2[b, h].T @ q2
    return out, {"W": (W1, W2)}


def _layer_norm(x, scale, bias, eps=1e-5):
    mu = x.mean()
    var = ((x - mu) ** 2).mean()
    return (x - mu) / np.sqrt(var + eps) * scale + bias


def delta_mlp(q, k, v, beta, ln_scale, ln_bias, *, depth=None, eps=1e-5, ln_eps=1e-5, state=None):
    q, beta, ln_scale, ln_bias = _f64(q, beta, ln_scale, ln_bias)
    k, v = _f64(*k), _f64(*v)
    L = len(k) // 2
    B, T, H, d = q.shape
    f = k[1].shape[-1]
    if state is None:
        W = [np.zeros((B, H, d, f)) if i % 2 == 0 else np.zeros((B, H, f, d)) for i in range(2 * L)]
    else:
        W = [np.array(w, np.float64) for w in state["W"]]
    out = np.zeros((B, T, H, d))
    for b in range(B):
        for h in range(H):
            for t in range(T):
                a = q[b, t, h]
                for layer in range(L):
                    i, j = 2 * layer, 2 * layer + 1
                    u = sumnorm(elu1(_layer_norm(a, ln_scale[layer], ln_bias[layer], ln_eps)), eps)
                    W[i][b, h] = delta_write(W[i][b, h], k[i][b, t, h], v[i][b, t, h], beta[b, t, h, i])
                    hidden = sumnorm(elu1(W[i][b, h].T @ u), eps)
                    W[j][b, h] = delta_write(W[j][b, h], k[j][b, t, h], v[j][b, t, h], beta[b, t, h, j])
                    a = a + W[j][b, h].T @ hidden
                out[b, t, h] = a
    return out, {"W": tuple(W)}


def delta_rnn(q, k, v, beta, rk, rv, rbeta, *, version=2, state=None):
    q, k, v, beta, rk, rv, rbeta = _f64(q, k, v, beta, rk, rv, rbeta)
    B, T, H, K = q.shape
    V = v.shape[-1]
    W = _init(state, "W", (B, H, K, V))
    R = _init(state, "R", (B, H, V, V))
    y = _init(state, "y", (B, H, V))
    out = np.zeros((B, T, H, V))
    for b in range(B):
        for h in range(H):
            for t in range(T):
                W[b, h] = delta_write(W[b, h], k[b, t, h], v[b, t, h], beta[b, t, h])
                zt = W[b, h].T @ q[b, t, h]
                R[b, h] = delta_write(R[b, h], rk[b, t, h], rv[b, t, h], rbeta[b, t, h])
                if version == 2:
                    y[b, h] = R[b, h].T @ softmax_eps(y[b, h]) + zt
                else:
                    y[b, h] = softmax(R[b, h].T @ y[b, h] + zt)
                out[b, t, h] = y[b, h]
    return out, {"W": W, "R": R, "y": y}


def delta_lstm(q, k, v, beta, rk, rv, rbeta, *, version=4, state=None):
    q, k, v, beta, rk, rv, rbeta = _f64(q, k, v, beta, rk, rv, rbeta)
    B, T, H, G, K = q.shape
    V = v.shape[-1]
    W = _init(state, "W", (B, H, G, K, V))
    R = _init(state, "R", (B, H, G, V, V))
    hs = _init(state, "h", (B, H, V))
    cs = _init(state, "c", (B, H, V))
    out = np.zeros((B, T, H, V))
    I, U, O = 0, 1, 2
    for b in range(B):
        for h in range(H):
            for t in range(T):
                z = {}
                for g in (I, U, O):
                    W[b, h, g] = delta_write(W[b, h, g], k[b, t, h, g], v[b, t, h, g], beta[b, t, h, g])
                    z[g] = W[b, h, g].T @ q[b, t, h, g]
                    R[b, h, g] = delta_write(R[b, h, g], rk[b, t, h, g], rv[b, t, h, g], rbeta[b, t, h, g])
                s = hs[b, h] if version == 1 else softmax_eps(hs[b, h])
                i = sigmoid(R[b, h, I].T @ s + z[I])
                o = sigmoid(R[b, h, O].T @ s + z[O])
                u = R[b, h, U].T @ s + z[U]
                if version != 4:
                    u = sigmoid(u)
                cs[b, h] = i * u + (1 - i) * cs[b, h]
                if version == 1:
                    hs[b, h] = softmax(o * cs[b, h])
                elif version == 3:
                    hs[b, h] = o * cs[b, h] + z[U]
                else:
                    hs[b, h] = o * cs[b, h]
                out[b, t, h] = hs[b, h]
    return out, {"W": W, "R": R, "h": hs, "c": cs}


def recurrent_delta_net(q, k, v, beta, *, params, state=None):
    q, k, v, beta = _f64(q, k, v, beta)
    Rq, Rk, Rv, rb = _f64(params.R_q, params.R_k, params.R_v, params.r_b)
    B, T, H, D = q.shape
    W = _init(state, "W", (B, H, D, D))
    y = _init(state, "y", (B, H, D))
    out = np.zeros((B, T, H, D))
    for b in range(B):
        for h in range(H):
            for t in range(T):
                s = np.tanh(y[b, h])
                qt = softmax(q[b, t, h] + Rq[h].T @ s)
                kt = softmax(k[b, t, h] + Rk[h].T @ s)
                vt = v[b, t, h] + Rv[h].T @ s
                bt = sigmoid(beta[b, t, h] + rb[h] @ s)
                W[b, h] = delta_write(W[b, h], kt, vt, bt)
                y[b, h] = W[b, h].T @ qt
                out[b, t, h] = y[b, h]
    return out, {"W": W, "y": y}


# ----------------------------------------------------------------------------- layers
# The slow net's side of each variant in its layer (PAPER_SPEC 1-2, the per-head layouts of
# 2.2-2.10): `P [B, T, H, width]` is the slow projection in the official per-head order,
# `phi` the feature map (and sum normalisation) of queries and keys, `d` the head dim, `f`
# the Delta MLP's fast hidden width and `slow` the layer's other slow parameters (NumPy
# arrays). Each returns the core's outputs `[B, T, H, d]`.

def _apply(fn, x):
    """`fn` on every vector along the last axis."""
    return np.apply_along_axis(fn, -1, x)


def _cut(P, lo, n):
    return P[..., lo:lo + n]


def layer_linear_transformer(P, phi, d, f, slow, *, normalize):
    return linear_transformer(phi(_cut(P, 0, d)), phi(_cut(P, d, d)), _cut(P, 2 * d, d), normalize=normalize)[0]


def layer_delta_net(P, phi, d, f, slow):
    return delta_net(phi(_cut(P, 0, d)), phi(_cut(P, d, d)), _cut(P, 2 * d, d), sigmoid(P[..., 3 * d]))[0]


def layer_delta_delta_net(P, phi, d, f, slow):
    return delta_delta_net(phi(_cut(P, 0, d)), phi(_cut(P, d, d)), _cut(P, 2 * d, 3 * d + 1),
                           sigmoid(P[..., 5 * d + 1]))[0]


def layer_delta_rnn(P, phi, d, f, slow, *, version):
    soft = lambda a: _apply(softmax, a)  # noqa: E731
    return delta_rnn(phi(_cut(P, 0, d)), phi(_cut(P, d, d)), _cut(P, 2 * d, d), sigmoid(P[..., 5 * d]),
                     soft(_cut(P, 3 * d, d)), _cut(P, 4 * d, d), sigmoid(P[..., 5 * d + 1]), version=version)[0]


def layer_delta_lstm(P, phi, d, f, slow, *, version):
    # Per head: (q k v rk rv) for gates i, u, o, then (beta rbeta) for i, u, o.
    piece = lambda g, j: _cut(P, (5 * g + j) * d, d)  # noqa: E731
    stack = lambda j: np.stack([piece(g, j) for g in range(3)], axis=-2)  # noqa: E731
    scalars = lambda j: sigmoid(np.stack([P[..., 15 * d + 2 * g + j] for g in range(3)], axis=-1))  # noqa: E731
    return delta_lstm(phi(stack(0)), phi(stack(1)), stack(2), scalars(0), _apply(softmax, stack(3)), stack(4),
                      scalars(1), version=version)[0]


def layer_recurrent_delta_net(P, phi, d, f, slow):
    params = type("Params", (), slow)
    return recurrent_delta_net(_cut(P, 0, d), _cut(P, d, d), _cut(P, 2 * d, d), P[..., 3 * d], params=params)[0]


def layer_delta_mlp(P, phi, d, f, slow, *, depth):
    # q (d), kv (4L(d+f)) = keys | values, betas (2L)
    half = 2 * depth * (d + f)
    keys, values = _cut(P, d, half), _cut(P, d + half, half)
    k, v, ko, vo = [], [], 0, 0
    for i in range(2 * depth):
        kn, vn = (d, f) if i % 2 == 0 else (f, d)
        k.append(phi(keys[..., ko:ko + kn]))
        v.append(values[..., vo:vo + vn])
        ko, vo = ko + kn, vo + vn
    return delta_mlp(_cut(P, 0, d), k, v, sigmoid(_cut(P, d + 2 * half, 2 * depth)), slow["ln_scale"],
                     slow["ln_bias"])[0]


def layer_gated_delta_net(P, phi, d, f, slow):
    # Per head q, k, v, beta, a; the decay of FLA's GatedDeltaNet layer:
    # g = -exp(A_log) * softplus(a + dt_bias), one scalar per head and step.
    a = P[..., 3 * d + 1]
    g = -np.exp(slow["A_log"]) * np.logaddexp(0.0, a + slow["dt_bias"])
    return gated_delta_net(phi(_cut(P, 0, d)), phi(_cut(P, d, d)), _cut(P, 2 * d, d), sigmoid(P[..., 3 * d]), g)[0]


# Layers of variants beyond the paper (no official id): variant -> (q/k feature map, sum-norm
# eps or None for none, 1/sqrt(d) output scale, options), under the LM convention.
LAYER_SETTINGS = {
    "gated_delta_net": ("elu", 0.0, True, {}),   # as the Delta Net's LM layer
}

