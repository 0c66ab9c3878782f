"""Reinforcement learning: an IMPALA agent whose LSTM core is replaced by fast-weight cores
(PAPER_SPEC 3.4, 7), trained by a Sebulba-style actor-learner loop.

One concern per module:
- `envs`: vector environments behind one interface (Atari through ale-py or envpool, MinAtar
  through pgx), torchbeast's semantics (episodic life, FIRE after a life loss), episode stats;
- `agent`: the torsos, the cores (LSTM, Linear Transformer, Delta Net, Delta RNN, RDN, Gated
  Delta Net), the policy and baseline heads;
- `vtrace`, `learner`: V-trace, the IMPALA loss, the jitted learner step over a device mesh;
- `actor`: the batched policy step, rollouts of T+1 rows, actor threads;
- `loop`: `train(exp, run_dir)`, the actor-learner loop with checkpoints and exact resume;
- `evaluation`: greedy scores (per life and per game), GIFs and frame strips;
- `config`, `presets`: `RLExperiment` and the named runs (`paper_<core>`, `minatar_tiny`, ...).

The environment packages (gymnasium + ale-py, pgx + pgx-minatar; the `rl` extra) are
imported only when an environment is made.
"""
