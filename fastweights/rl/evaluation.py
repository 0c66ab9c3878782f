"""Scoring a policy: the greedy (argmax, as polybeast's `--mode test`) or sampled policy over
N games, with both returns an Atari paper may mean: per life (what torchbeast logs and tests
under EpisodicLife, where every life loss ends an "episode") and per full game; and frames of
one game as a GIF and a PNG strip.

Each of the N games is played by its own environment of one vector env, and every game is
counted once, to its end: no bias towards short games.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from fastweights.rl import envs as rl_envs
from fastweights.rl.actor import make_policy_step


def evaluate_policy(graphdef, rest, params, env_config: rl_envs.EnvConfig, *, episodes: int = 10, seed: int = 0,
                    greedy: bool = True, record: int = 0, max_steps: int = 1_000_000) -> dict[str, Any]:
    """Plays `episodes` games (one per environment) to their end.

    Returns the mean and std (over games) of the full-game return and of the per-life
    return, the lists, the mean game length in frames, and with `record > 0` the first
    `record` frames of game 0 (`"frames"`: a list of [H, W, 3] uint8) for `save_gif` and
    `save_strip`.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = rl_envs.make_env(dataclasses.replace(env_config, num_envs=episodes), seed=seed)
    try:
        policy = make_policy_step(graphdef, rest, greedy=greedy)
        state = nnx.merge(graphdef, params, rest).init_state(episodes)
        step = env.reset()
        B = episodes
        running_life, running_game = np.zeros(B), np.zeros(B)
        frames_played = np.zeros(B, np.int64)
        life_returns: list[list[float]] = [[] for _ in range(B)]
        game_returns = np.full(B, np.nan)
        game_frames = np.zeros(B, np.int64)
        ended = np.zeros(B, bool)
        frames = [rl_envs.frame_rgb(step.obs[0])] if record else []
        key = jax.random.PRNGKey(seed)
        per_step = rl_envs.frames_per_step(env_config)
        for t in range(max_steps):
            action, _, _, state = policy(params, step.obs, step.reward.astype(np.float32), step.done, state,
                                         jax.random.fold_in(key, t))
            step = env.step(np.asarray(action))
            live = ~ended
            running_life += np.where(live, step.reward, 0.0)
            running_game += np.where(live, step.reward, 0.0)
            frames_played += live * per_step
            for i in np.flatnonzero(live & step.done):
                life_returns[i].append(float(running_life[i]))
                running_life[i] = 0.0
            for i in np.flatnonzero(live & step.episode_end):
                game_returns[i], game_frames[i] = running_game[i], frames_played[i]
            ended |= step.episode_end
            if record and not ended[0] and len(frames) < record:
                frames.append(rl_envs.frame_rgb(step.obs[0]))
            if ended.all():
                break
        else:
            raise RuntimeError(f"{int((~ended).sum())} of {B} games did not end within {max_steps} steps")
    finally:
        env.close()
    lives = [r for game in life_returns for r in game]
    out = {"episodes": B, "greedy": greedy,
           "game_return_mean": float(np.mean(game_returns)), "game_return_std": float(np.std(game_returns)),
           "life_return_mean": float(np.mean(lives)), "life_return_std": float(np.std(lives)),
           "lives_per_game": len(lives) / B, "game_frames_mean": float(np.mean(game_frames)),
           "game_returns": game_returns.tolist(), "life_returns": lives}
    if record:
        out["frames"] = frames
    return out


def save_gif(frames: list[np.ndarray], path: str | Path, *, fps: int = 15) -> Path:
    """An animated GIF of [H, W, 3] uint8 frames (Pillow)."""
    from PIL import Image
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def save_strip(frames: list[np.ndarray], path: str | Path, *, count: int = 8) -> Path:
    """`count` frames evenly spaced over the episode, side by side in one PNG."""
    from PIL import Image
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    gap = np.full((frames[0].shape[0], 2, 3), 255, np.uint8)
    row = np.concatenate([x for i in picks for x in (frames[i], gap)][:-1], axis=1)
    Image.fromarray(row).save(path)
    return path
