"""Minimal PyTorch CPU loops of the same recurrences, for side-by-side timing.

Run by `bench_ops.py` in a separate interpreter that has torch (`make bench` sets it up);
prints one JSON line per measurement. Never imported by the library.

    python benchmarks/torch_reference.py --batch 8 --time 512 --heads 8 --dim 64
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def delta_net(q, k, v, beta):
    """Per-token delta rule, `[B, H, T, D]` inputs (the official kernels' layout)."""
    B, H, T, K = q.shape
    W = q.new_zeros(B, H, K, v.shape[-1])
    outs = []
    for t in range(T):
        k_t, v_t, b_t = k[:, :, t], v[:, :, t], beta[:, :, t, None]
        v_old = torch.einsum("bhkv,bhk->bhv", W, k_t)
        W = W + torch.einsum("bhk,bhv->bhkv", k_t, b_t * (v_t - v_old))
        outs.append(torch.einsum("bhkv,bhk->bhv", W, q[:, :, t]))
    return torch.stack(outs, dim=2)


def delta_net_chunked(q, k, v, beta, chunk=64):
    """Chunkwise WY form of the delta rule in PyTorch (the algorithm of our `chunked`)."""
    B, H, T, K = q.shape
    V = v.shape[-1]
    n = T // chunk
    qc, kc, vc = (x.reshape(B, H, n, chunk, -1) for x in (q, k, v))
    bc = beta.reshape(B, H, n, chunk)
    gram = kc @ kc.transpose(-1, -2)
    system = torch.eye(chunk) + torch.tril(bc[..., None] * gram, -1)
    rhs = bc[..., None] * torch.cat([kc, vc], -1)
    solved = torch.linalg.solve_triangular(system, rhs, upper=False, unitriangular=True)
    w, u_v = solved[..., :K], solved[..., K:]
    attn = torch.tril(qc @ kc.transpose(-1, -2))
    S = q.new_zeros(B, H, K, V)
    outs = []
    for c in range(n):
        u = u_v[:, :, c] - w[:, :, c] @ S
        outs.append(qc[:, :, c] @ S + attn[:, :, c] @ u)
        S = S + kc[:, :, c].transpose(-1, -2) @ u
    return torch.stack(outs, 2).reshape(B, H, T, V)


def delta_rnn(q, k, v, beta, rk, rv, rbeta):
    """Per-token Delta RNN v2."""
    B, H, T, K = q.shape
    V = v.shape[-1]
    W, R, y = q.new_zeros(B, H, K, V), q.new_zeros(B, H, V, V), q.new_zeros(B, H, V)
    outs = []
    for t in range(T):
        W = W + torch.einsum("bhk,bhv->bhkv", k[:, :, t], beta[:, :, t, None] * (
            v[:, :, t] - torch.einsum("bhkv,bhk->bhv", W, k[:, :, t])))
        R = R + torch.einsum("bhk,bhv->bhkv", rk[:, :, t], rbeta[:, :, t, None] * (
            rv[:, :, t] - torch.einsum("bhkv,bhk->bhv", R, rk[:, :, t])))
        e = torch.exp(y - y.amax(-1, keepdim=True))
        s = e / (e.sum(-1, keepdim=True) + 1e-6)
        y = torch.einsum("bhkv,bhk->bhv", R, s) + torch.einsum("bhkv,bhk->bhv", W, q[:, :, t])
        outs.append(y)
    return torch.stack(outs, dim=2)


def _inputs(name, B, T, H, D):
    g = torch.Generator().manual_seed(0)
    rand = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    phi = lambda x: (torch.nn.functional.elu(x) + 1) / (torch.nn.functional.elu(x) + 1).sum(-1, keepdim=True)  # noqa: E731
    q, k, v = phi(rand(B, H, T, D)), phi(rand(B, H, T, D)), rand(B, H, T, D)
    beta = torch.sigmoid(rand(B, H, T))
    if name == "delta_rnn":
        return q, k, v, beta, torch.softmax(rand(B, H, T, D), -1), rand(B, H, T, D), torch.sigmoid(rand(B, H, T))
    return q, k, v, beta


FUNCTIONS = {"delta_net": delta_net, "delta_net_chunked": delta_net_chunked, "delta_rnn": delta_rnn}


def _time(fn, repeats, warmup=3):
    """Median wall time after `warmup` calls, as `benchmarks.common.timed`."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main(argv=None):
    parser = argparse.ArgumentParser()
    for flag, default in [("batch", 8), ("time", 512), ("heads", 8), ("dim", 64), ("repeats", 3)]:
        parser.add_argument(f"--{flag}", type=int, default=default)
    parser.add_argument("--names", default=",".join(FUNCTIONS))
    a = parser.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    for name in a.names.split(","):
        fn = FUNCTIONS[name]
        base = "delta_rnn" if name == "delta_rnn" else "delta_net"
        inputs = _inputs(base, a.batch, a.time, a.heads, a.dim)
        with torch.no_grad():
            t_fwd = _time(lambda: fn(*inputs), a.repeats)
        grads_in = [x.clone().requires_grad_(True) for x in inputs]

        def fwd_bwd():
            out = fn(*grads_in)
            out.square().sum().backward()

        t_bwd = _time(fwd_bwd, a.repeats)
        print(json.dumps({"impl": f"torch:{name}", "torch": torch.__version__, "threads": torch.get_num_threads(),
                          "fwd_s": t_fwd, "fwd_bwd_s": t_bwd}), flush=True)


if __name__ == "__main__":
    main()
