"""Named RL experiments.

    >>> from fastweights.rl import presets
    >>> exp = presets.get("minatar_tiny", ["agent.core=lstm"])
    >>> exp.agent.core, exp.env.game
    ('lstm', 'breakout')

- `paper_<core>`: the paper's Atari runs (PAPER_SPEC 7): 48 environments (3 actor threads of
  16), batch 32, unroll 50, 2e8 agent steps (8e8 emulator frames: polybeast counts T x B
  agent steps per update, each 4 frames), RMSProp 6e-4 decayed linearly to 0 over the run.
  `paper_50m_<core>` is its first 5e7 steps, the rate decaying over the same 2e8 horizon:
  the paper's 50M-step results are that checkpoint of the long run. The game is
  `env.game` (default Gopher, the README's example; the paper's game list is not known).
- `minatar_tiny`: MinAtar Breakout, 1M steps, on a 2-core CPU in about 2.5 minutes per core (`make rl`
  runs the Delta Net and the LSTM core).
- `atari_tiny`: Pong with the Nature DQN torso for a few thousand frames: the whole Atari
  pipeline on a CPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from fastweights.experiment import override
from fastweights.nn.config import RLCoreConfig
from fastweights.rl.agent import CORES, AgentConfig
from fastweights.rl.config import PAPER_OPTIMIZER, RLExperiment, RunConfig
from fastweights.rl.envs import EnvConfig
from fastweights.training.config import OptimizerConfig

PAPER_TOTAL_STEPS = 200_000_000
PAPER_50M_STEPS = 50_000_000


def _presets() -> dict[str, RLExperiment]:
    out = {}
    paper_env = EnvConfig(suite="atari", game="Gopher", num_envs=16)
    paper_run = RunConfig(total_steps=PAPER_TOTAL_STEPS, unroll_length=50, batch_size=32, num_actor_threads=3,
                          checkpoint_every=1000, log_every=50)
    horizon = PAPER_TOTAL_STEPS // (paper_run.unroll_length * paper_run.batch_size)
    for core in CORES:
        agent = AgentConfig(torso="deep", core=core)
        out[f"paper_{core}"] = RLExperiment(paper_env, agent, PAPER_OPTIMIZER, run=paper_run)
        out[f"paper_50m_{core}"] = RLExperiment(
            paper_env, agent, dataclasses.replace(PAPER_OPTIMIZER, decay_steps=horizon),
            run=dataclasses.replace(paper_run, total_steps=PAPER_50M_STEPS))
    tiny_core = RLCoreConfig(model_dim=64, num_layers=1, num_heads=4, head_dim=16, ff_dim=128)
    out["minatar_tiny"] = RLExperiment(
        EnvConfig(suite="minatar", game="breakout", num_envs=32),
        AgentConfig(torso="small", core="delta_net", core_config=tiny_core, lstm_hidden=64, obs_scale=1.0),
        OptimizerConfig(optimizer="rmsprop", learning_rate=2e-3, decay=0.99, eps=0.01, clip_norm=40.0,
                        schedule="linear"),
        run=RunConfig(total_steps=1_000_000, unroll_length=20, batch_size=32, num_actor_threads=1, queue_size=2,
                      log_every=10, checkpoint_every=100, eval_episodes=10))
    out["atari_tiny"] = RLExperiment(
        EnvConfig(suite="atari", game="Pong", num_envs=4),
        AgentConfig(torso="nature", torso_dim=128, core="delta_net", core_config=tiny_core, lstm_hidden=64),
        PAPER_OPTIMIZER,
        run=RunConfig(total_steps=1_600, unroll_length=20, batch_size=8, num_actor_threads=1, queue_size=2,
                      log_every=5, checkpoint_every=10, eval_episodes=0))
    return out


PRESETS: Mapping[str, RLExperiment] = MappingProxyType(_presets())


def get(name: str, overrides: Sequence[str] = ()) -> RLExperiment:
    """The preset with `overrides` ("section.field=value") applied; `ValueError` lists the
    valid names or fields when one is wrong."""
    if name not in PRESETS:
        raise ValueError(f"unknown RL preset {name!r}; valid: {', '.join(PRESETS)}")
    return override(PRESETS[name], overrides)
