"""Batched RL environments with torchbeast's semantics: Atari (ale-py, optionally envpool)
and MinAtar (pgx), behind one numpy interface.

Every adapter steps `num_envs` environments at once and returns an `EnvStep` of numpy
arrays, batch first. Autoreset is same-step, as in torchbeast's `Environment.step`: when a
step ends a life or a game, its `reward` is the last reward of the old one and its `obs` is
already the first observation of the new one. `done` is the core-state reset flag (a life
lost under `episodic_life`, a game over, or the time limit); `episode_end` marks only the
game really ending (game over or time limit) and implies `done`.

Atari, ale backend (the paper's stack: gym `*NoFrameskip-v4` + baselines' `make_atari` and
`wrap_deepmind(episode_life=True, clip_rewards=False, frame_stack=True)`, transposed to CHW):

* Each environment is its own `ale_py.ALEVectorInterface` of size 1 (frame skip with a
  max-pool of the last two frames, 84x84 grayscale, OpenCV `INTER_AREA` resize as in
  baselines' `WarpFrame`, no reward clipping, `life_loss_info=True` so a life loss is
  reported while the game goes on, same-step autoreset of the game). One interface per
  environment is what lets the adapter step only the environments that need the extra
  reset steps below; each has one C++ worker thread, all are sent their action before any
  result is received, and `recv` releases the GIL, so the B emulators run in parallel and
  another Python thread (a learner) runs meanwhile. `num_threads` is therefore ignored.
* The reset steps of the official wrappers, which ale-py does not do, are replayed in the
  adapter. After a life loss (`episodic_life=True`): `EpisodicLifeEnv.reset` takes one
  NOOP step, then `FireResetEnv.reset` (games whose action set has FIRE) takes a FIRE step
  and an action-2 step; if the FIRE or action-2 step loses another life, a NOOP step
  follows it (`EpisodicLifeEnv.reset` again). After a game over or the time limit:
  ale-py's reset (`reset_game` and U{0..noop_max} raw NOOP frames), then the same FIRE and
  action-2 steps. Each is a full frame-skip step; their rewards are dropped, as in the
  official stack. The returned obs is then the last frame of these steps repeated
  `frame_stack` times (`FrameStack.reset`). With `episodic_life=False` there is no
  `EpisodicLifeEnv`: a life loss is no event at all (no done, no FIRE; in Breakout the
  agent must press FIRE itself), and `done == episode_end`.
* Known differences from the official stack: (1) the max-pool is over two grayscale frames
  (ale-py, envpool), not over RGB frames converted afterwards: where a pixel changes colour
  between the two frames they can differ (random play: none in Breakout and Space Invaders,
  0.2-0.5% of the 84x84 pixels in Pong, Ms. Pac-Man and Seaquest, by up to 16 grey levels;
  ALE's grayscale screen itself equals OpenCV's RGB2GRAY of its RGB screen, and the resize
  is OpenCV's INTER_AREA as in WarpFrame); (2) the no-op count is uniform on {0..noop_max} (ale-py), not on
  {1..noop_max}; (3) the time limit counts frames from the end of the no-ops, not from the
  emulator reset; (4) if the game ends inside the reset steps (it needs a game over within
  a dozen frames of a life loss), ale-py has already started the next game: the step the
  official stack would spend on the finished game is skipped, and `episode_end` is set.
* `max_episode_frames` defaults to 400_000 emulator frames: gym's `*NoFrameskip-v4`
  TimeLimit (100_000 x its frameskip of 4; 300_000 for SpaceInvaders, whose gym frameskip
  is 3) under which the paper ran. ale-py's own v4/v5 registrations use 108_000 (30 min).
* Sticky actions: 0 for Atari (v4 semantics, the paper), 0.1 for MinAtar (MinAtar's and
  pgx's default).

Atari, envpool backend (optional, `pip install envpool`): envpool's own implementation of
the same pipeline, made same-step here; it differs from the stack above after a life loss
(envpool resets the life with random raw no-ops and one raw FIRE frame instead of the NOOP,
FIRE and action-2 steps, and does not refill the frame stack), see `_EnvpoolAtari`.

MinAtar (pgx): `pgx.make("minatar-<game>")` (sticky actions as above), all B games stepped
by one jitted `vmap` on the CPU; obs `[10, 10, C]` bool -> `[C, 10, 10]` uint8. MinAtar has
no lives (`done == episode_end`) and pgx never truncates (Freeway ends itself after ~2500
steps; the others can run forever), so `max_episode_frames` (1 frame per step) is applied
here as a time limit. Random keys, so that a single-environment loop can reproduce a run:
`key = PRNGKey(seed)`; `reset` splits `key, k = split(key)` and inits env i with
`split(k, B)[i]`; every step splits `key, k_step, k_init = split(key, 3)` and steps env i
with `split(k_step, B)[i]`, re-initialising a finished one with `split(k_init, B)[i]`.
"""

from __future__ import annotations

import colorsys
import dataclasses
import functools
import importlib.util
import re
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

SUITES = ("minatar", "atari")
MINATAR_GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
BACKENDS = {"minatar": ("auto", "pgx"), "atari": ("auto", "ale", "envpool")}
# Sticky-action probability when `EnvConfig.sticky_action_prob` is None (module docstring).
DEFAULT_STICKY_ACTION_PROB = {"minatar": 0.1, "atari": 0.0}
ATARI_FRAME_SIZE = 84  # the Nature-DQN warp (baselines' WarpFrame)


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """Which environments to build and how (module docstring for the semantics).

    Attributes:
      suite: "minatar" (pgx) or "atari".
      game: MinAtar: one of `MINATAR_GAMES`; Atari: a gymnasium-style name ("Pong",
        "SpaceInvaders") or an ale-py ROM id ("space_invaders").
      num_envs: environments stepped together (per process).
      backend: "auto" (atari: "ale"; minatar: "pgx"), "ale", "envpool" or "pgx".
      episodic_life: Atari: `done` at every life loss while the game goes on.
      noop_max, frame_skip, frame_stack: Atari reset no-ops, action repeat, stacked frames.
      max_episode_frames: time limit in emulator frames (MinAtar: steps); reaching it ends
        the episode (`episode_end`).
      sticky_action_prob: None: the suite's default (`DEFAULT_STICKY_ACTION_PROB`).
      num_threads: envpool worker threads (0: one per env, at most the CPU count); the ale
        backend runs one C++ thread per environment and ignores it.
    The Atari-only fields are ignored for MinAtar (no frame skip, stack or lives).
    """
    suite: str = "minatar"
    game: str = "breakout"
    num_envs: int = 8
    backend: str = "auto"
    episodic_life: bool = True
    noop_max: int = 30
    frame_skip: int = 4
    frame_stack: int = 4
    max_episode_frames: int = 400_000
    sticky_action_prob: float | None = None
    num_threads: int = 0

    def __post_init__(self):
        if self.suite not in SUITES:
            raise ValueError(f"unknown suite {self.suite!r}; valid: {', '.join(SUITES)}")
        if self.backend not in BACKENDS[self.suite]:
            raise ValueError(f"backend {self.backend!r} does not run suite {self.suite!r}; "
                             f"valid: {', '.join(BACKENDS[self.suite])}")
        if self.suite == "minatar" and self.game not in MINATAR_GAMES:
            raise ValueError(f"unknown MinAtar game {self.game!r}; valid: {', '.join(MINATAR_GAMES)}")
        for name, low in (("num_envs", 1), ("frame_skip", 1), ("frame_stack", 1),
                          ("max_episode_frames", 1), ("noop_max", 0), ("num_threads", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.sticky_action_prob is not None and not 0.0 <= self.sticky_action_prob <= 1.0:
            raise ValueError(f"sticky_action_prob must be in [0, 1], got {self.sticky_action_prob}")

    @property
    def resolved_backend(self) -> str:
        """The backend that `make_env` uses ("auto" resolved)."""
        if self.backend != "auto":
            return self.backend
        return "pgx" if self.suite == "minatar" else "ale"

    @property
    def resolved_sticky_action_prob(self) -> float:
        """The sticky-action probability in force (None resolved per suite)."""
        if self.sticky_action_prob is None:
            return DEFAULT_STICKY_ACTION_PROB[self.suite]
        return self.sticky_action_prob


class EnvStep(NamedTuple):
    """One batched transition (numpy, batch first).

    obs: [B, C, H, W] uint8, after a `done` the first frame of the new life or game.
    reward: [B] float32 raw (unclipped) reward of this step.
    done: [B] bool, the core state is reset before this row (life lost under
      `episodic_life`, game over or time limit).
    episode_end: [B] bool, the game itself ended (game over or time limit); implies done.
    """
    obs: np.ndarray
    reward: np.ndarray
    done: np.ndarray
    episode_end: np.ndarray


@runtime_checkable
class VectorEnv(Protocol):
    """What `make_env` returns. `reset` gives reward 0, done True, episode_end False for
    every environment (so the core state starts at zero); `step` takes actions [B] ints."""
    config: EnvConfig
    num_envs: int
    num_actions: int
    obs_shape: tuple[int, int, int]

    def reset(self) -> EnvStep: ...

    def step(self, actions: np.ndarray) -> EnvStep: ...

    def close(self) -> None: ...


def make_env(config: EnvConfig, *, seed: int) -> VectorEnv:
    """The batched environments of `config`; deterministic given `seed` (and the action
    sequence). Raises ImportError, naming the package to install, if the backend is absent."""
    backend = config.resolved_backend
    if backend == "pgx":
        return _MinAtar(config, seed)
    if backend == "ale":
        return _AleAtari(config, seed)
    return _EnvpoolAtari(config, seed)


def frames_per_step(config: EnvConfig) -> int:
    """Emulator frames per agent step: Atari's frame skip, 1 for MinAtar."""
    return config.frame_skip if config.suite == "atari" else 1


def frame_rgb(obs: np.ndarray, *, scale: int | None = None) -> np.ndarray:
    """A viewable [H * scale, W * scale, 3] uint8 image of one observation [C, H, W] uint8.

    MinAtar (recognised by its 10x10 frames): each pixel gets the colour of its highest
    active channel (`minatar_palette`), black where none is; `scale` defaults to 8.
    Atari: the newest frame of the stack (channel -1) in gray; `scale` defaults to 1.
    """
    obs = np.asarray(obs)
    if obs.ndim != 3 or obs.dtype != np.uint8:
        raise ValueError(f"frame_rgb expects one [C, H, W] uint8 observation, got {obs.dtype} {obs.shape}")
    channels, height, width = obs.shape
    if (height, width) == (10, 10):
        active = obs > 0
        top = channels - 1 - np.argmax(active[::-1], axis=0)  # [H, W] highest active channel
        colours = np.concatenate([minatar_palette(channels), np.zeros((1, 3), np.uint8)])
        image = colours[np.where(active.any(axis=0), top, channels)]
        scale = 8 if scale is None else scale
    else:
        image = np.repeat(obs[-1][..., None], 3, axis=-1)
        scale = 1 if scale is None else scale
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def minatar_palette(num_channels: int) -> np.ndarray:
    """[num_channels, 3] uint8 distinct bright colours (hues evenly spaced), one per channel."""
    hues = np.arange(num_channels) / max(num_channels, 1)
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(h, 0.8, 1.0)] for h in hues],
                    np.uint8).reshape(num_channels, 3)


class EpisodeStats:
    """Accumulates returns from a stream of `EnvStep`s of `VectorEnv.step` (not the one of
    `reset`, which ends nothing): the per-life return at every `done` (what torchbeast logs
    under EpisodicLifeEnv), the full-game return and length at every `episode_end`.

    Game lengths are agent steps x `frames_per_step` (the hidden reset steps and no-ops of
    the Atari adapter are not counted). `pop` returns and clears what completed since the
    last `pop`, in step order and, within a step, environment order.
    """

    def __init__(self, frames_per_step: int = 1):
        if frames_per_step < 1:
            raise ValueError(f"frames_per_step must be >= 1, got {frames_per_step}")
        self.frames_per_step = frames_per_step
        self._life_return = self._game_return = self._game_steps = None
        self._completed = self._empty()

    @staticmethod
    def _empty() -> dict[str, list]:
        return dict(life_returns=[], game_returns=[], game_frames=[])

    def update(self, step: EnvStep) -> None:
        reward = np.asarray(step.reward, np.float64)
        done, episode_end = np.asarray(step.done, bool), np.asarray(step.episode_end, bool)
        if reward.ndim != 1 or done.shape != reward.shape or episode_end.shape != reward.shape:
            raise ValueError(f"EpisodeStats: reward, done and episode_end must be [B], got "
                             f"{reward.shape}, {done.shape}, {episode_end.shape}")
        if np.any(episode_end & ~done):
            raise ValueError("EpisodeStats: episode_end without done")
        if self._life_return is None:
            self._life_return, self._game_return = np.zeros_like(reward), np.zeros_like(reward)
            self._game_steps = np.zeros(reward.shape, np.int64)
        elif self._life_return.shape != reward.shape:
            raise ValueError(f"EpisodeStats: batch of {reward.shape[0]} after {self._life_return.shape[0]}")
        self._life_return += reward
        self._game_return += reward
        self._game_steps += 1
        for i in np.flatnonzero(done):
            self._completed["life_returns"].append(float(self._life_return[i]))
            self._life_return[i] = 0.0
        for i in np.flatnonzero(episode_end):
            self._completed["game_returns"].append(float(self._game_return[i]))
            self._completed["game_frames"].append(int(self._game_steps[i]) * self.frames_per_step)
            self._game_return[i] = 0.0
            self._game_steps[i] = 0

    def pop(self) -> dict[str, list]:
        """`dict(life_returns=[...], game_returns=[...], game_frames=[...])` since the last pop."""
        completed, self._completed = self._completed, self._empty()
        return completed


# --------------------------------------------------------------------------- helpers


def _env_seeds(seed: int, num_envs: int) -> list[int]:
    """Per-environment emulator seeds (non-negative int32, as ALE takes them) from one seed."""
    return [int(s) >> 1 for s in np.random.SeedSequence(seed).generate_state(num_envs, np.uint32)]


def _check_actions(actions, num_envs: int, num_actions: int) -> np.ndarray:
    actions = np.asarray(actions)
    if actions.shape != (num_envs,) or not np.issubdtype(actions.dtype, np.integer):
        raise ValueError(f"actions must be [{num_envs}] integers, got {actions.dtype} {actions.shape}")
    if actions.size and (actions.min() < 0 or actions.max() >= num_actions):
        raise ValueError(f"actions must be in [0, {num_actions}), got {actions.min()}..{actions.max()}")
    return actions.astype(np.int32)


def _ale_rom_id(game: str) -> str:
    """The ale-py ROM id of a gymnasium-style name ("SpaceInvaders") or of a ROM id."""
    from ale_py import roms

    ids = roms.get_all_rom_ids()
    by_name = {rom.title().replace("_", ""): rom for rom in ids}  # ale-py's rom_id_to_name
    if game in ids:
        return game
    if game in by_name:
        return by_name[game]
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", game).lower()
    if snake in ids:
        return snake
    raise ValueError(f"unknown Atari game {game!r}; e.g. {', '.join(sorted(by_name)[:8])}, ...")


class _Closing:
    """Context-manager support: `with make_env(...) as env:` closes it."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


# --------------------------------------------------------------------------- Atari (ale-py)

_NOOP, _FIRE = 0, 1


class _AleAtari(_Closing):
    """Atari through one size-1 `ale_py.ALEVectorInterface` per environment (module docstring)."""

    def __init__(self, config: EnvConfig, seed: int):
        if config.suite != "atari":
            raise ValueError(f"the ale backend runs the atari suite, not {config.suite!r}")
        try:
            import ale_py
        except ImportError as error:
            raise ImportError("the atari suite needs ale-py: pip install ale-py") from error
        self.config = config
        self.num_envs = config.num_envs
        rom_path = ale_py.roms.get_rom_path(_ale_rom_id(config.game))
        self._envs = [ale_py.ALEVectorInterface(
            rom_path=rom_path, num_envs=1, batch_size=0, num_threads=1, thread_affinity_offset=-1,
            autoreset_mode="SameStep", img_height=ATARI_FRAME_SIZE, img_width=ATARI_FRAME_SIZE,
            stack_num=1, grayscale=True, frame_skip=config.frame_skip, maxpool=True,
            # ale-py draws U{0..n-1} no-op frames: n = noop_max + 1 gives U{0..noop_max}.
            noop_max=config.noop_max + 1,
            use_fire_reset=False,  # FIRE is the adapter's, as full steps after the no-ops
            episodic_life=False,  # ale-py's would reset the whole game at a life loss
            life_loss_info=True, reward_clipping=False, max_episode_steps=config.max_episode_frames,
            repeat_action_probability=config.resolved_sticky_action_prob, full_action_space=False,
        ) for _ in range(config.num_envs)]
        action_set = list(self._envs[0].get_action_set())
        self.num_actions = len(action_set)
        # baselines' wrap_deepmind adds FireResetEnv iff FIRE is in the action meanings (it is
        # then action 1, and FireResetEnv also presses action 2).
        self._has_fire = ale_py.Action.FIRE in action_set
        if self._has_fire and (action_set.index(ale_py.Action.FIRE) != _FIRE or len(action_set) < 3):
            raise ValueError(f"{config.game}: FIRE is not action 1 of {action_set}")
        self.obs_shape = (config.frame_stack, ATARI_FRAME_SIZE, ATARI_FRAME_SIZE)
        self._seeds = _env_seeds(seed, config.num_envs)
        self._seeded = False
        shape = (config.num_envs, ATARI_FRAME_SIZE, ATARI_FRAME_SIZE)
        self._frame = np.zeros(shape, np.uint8)  # newest frame of each environment
        self._stack = np.zeros((config.num_envs, *self.obs_shape), np.uint8)
        # Frame counters from ale-py's info: a step whose episode counter did not advance with
        # the emulator's was reset (game over or time limit) in that same step.
        self._frame_number = np.zeros(config.num_envs, np.int64)
        self._episode_frame_number = np.zeros(config.num_envs, np.int64)
        self._started = False

    def _record(self, i: int, obs: np.ndarray, info: dict) -> bool:
        """Stores env i's newest frame and counters; True if ale-py reset its game."""
        self._frame[i] = obs[0, -1]
        frame_number, episode_frame_number = int(info["frame_number"][0]), int(info["episode_frame_number"][0])
        was_reset = (episode_frame_number - self._episode_frame_number[i]
                     != frame_number - self._frame_number[i])
        self._frame_number[i], self._episode_frame_number[i] = frame_number, episode_frame_number
        return was_reset

    def _act(self, ids, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One frame-skip step of environments `ids`, all sent before any is received:
        (raw reward, game reset by ale-py (game over or time limit), life lost), each [len(ids)]."""
        for i, action in zip(ids, actions):
            self._envs[i].send([int(action)], [1.0])
        reward = np.zeros(len(ids), np.float32)
        game_reset = np.zeros(len(ids), bool)
        life_lost = np.zeros(len(ids), bool)
        for j, i in enumerate(ids):
            obs, rew, terminated, truncated, info = self._envs[i].recv()
            game_reset[j] = self._record(i, obs, info)
            if truncated[0] and not game_reset[j]:
                raise RuntimeError("ale-py reported a time limit without resetting the game")
            reward[j] = rew[0]
            # life_loss_info: terminated without a game over is a life lost, the game goes on.
            life_lost[j] = terminated[0] and not game_reset[j]
        return reward, game_reset, life_lost

    def _official_reset(self, real: bool):
        """The official reset as a coroutine: yields each action, receives (game_reset,
        life_lost) of that step. `real`: the game ended (ale-py has already reset it)."""
        skip_next = False
        if not real:  # EpisodicLifeEnv.reset after a life loss: one NOOP step
            game_reset, _ = yield _NOOP
            # The official next step would act on the finished game and then reset it.
            skip_next = game_reset
        if not self._has_fire:
            return
        for action in (_FIRE, 2):  # FireResetEnv.reset
            if skip_next:
                skip_next = False
                continue
            game_reset, life_lost = yield action
            if life_lost and self.config.episodic_life:  # done -> EpisodicLifeEnv.reset
                game_reset, _ = yield _NOOP
                skip_next = game_reset

    def _run_resets(self, ids, real) -> np.ndarray:
        """Replays the official reset steps of environments `ids` in lock-step; returns for
        each whether its game ended during them."""
        coroutines = {i: self._official_reset(bool(r)) for i, r in zip(ids, real)}
        ended = dict.fromkeys(ids, False)
        pending = {i: a for i, c in coroutines.items() if (a := next(c, None)) is not None}
        while pending:
            _, game_reset, life_lost = self._act(list(pending), list(pending.values()))
            following = {}
            for j, i in enumerate(pending):
                ended[i] |= bool(game_reset[j])
                try:
                    following[i] = coroutines[i].send((bool(game_reset[j]), bool(life_lost[j])))
                except StopIteration:
                    pass
            pending = following
        return np.array([ended[i] for i in ids], bool)

    def reset(self) -> EnvStep:
        if not self._envs:
            raise RuntimeError("the environment is closed")
        seeds = self._seeds if not self._seeded else [-1] * self.num_envs  # -1: continue the RNG
        self._seeded = True
        for i, env in enumerate(self._envs):
            obs, info = env.reset([0], [seeds[i]])
            self._frame_number[i] = self._episode_frame_number[i] = 0
            self._record(i, obs, info)
        ids = list(range(self.num_envs))
        self._run_resets(ids, real=[True] * self.num_envs)
        self._stack[:] = self._frame[:, None]
        self._started = True
        b = self.num_envs
        return EnvStep(self._stack.copy(), np.zeros(b, np.float32), np.ones(b, bool), np.zeros(b, bool))

    def step(self, actions: np.ndarray) -> EnvStep:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = _check_actions(actions, self.num_envs, self.num_actions)
        reward, game_reset, life_lost = self._act(range(self.num_envs), actions)
        episode_end = game_reset
        done = game_reset | (life_lost & self.config.episodic_life)
        ids = np.flatnonzero(done)
        if ids.size:
            episode_end = episode_end.copy()
            episode_end[ids] |= self._run_resets(ids.tolist(), real=game_reset[ids])
        stack = np.concatenate([self._stack[:, 1:], self._frame[:, None]], axis=1)
        stack[ids] = self._frame[ids, None]  # FrameStack.reset: the fresh frame, stack_num times
        self._stack = stack
        return EnvStep(stack.copy(), reward, done, episode_end)

    def close(self) -> None:
        self._envs = []  # the interfaces' destructors stop and join their threads
        self._started = False


# --------------------------------------------------------------------------- Atari (envpool)


class _EnvpoolAtari(_Closing):
    """Atari through envpool (`pip install envpool`), made same-step.

    envpool's own pipeline (max-pool of grayscale frames, INTER_AREA, `episodic_life`,
    `reward_clip=False`, FIRE at reset) resets on the step *after* a done, ignoring that
    step's action; here that reset step is taken at once for the finished environments
    (async mode with batch size 1 lets a subset be stepped), so `obs` after a done is the
    new life's or game's first frame. envpool's reset after a life loss is U{0..noop_max-1}
    raw NOOP frames then one raw FIRE frame (U{1..noop_max} no-ops in a game without FIRE),
    pushed onto the old frame stack; after a game over or the time limit it is `reset_game`,
    the same no-ops and FIRE frame, the stack filled with that frame. Its time limit counts
    agent steps: `max_episode_frames // frame_skip`; `noop_max=0` acts as 1.
    """

    def __init__(self, config: EnvConfig, seed: int):
        if config.suite != "atari":
            raise ValueError(f"the envpool backend runs the atari suite, not {config.suite!r}")
        try:
            import envpool
        except ImportError as error:
            raise ImportError("the envpool backend needs envpool: pip install envpool "
                              "(or use backend='ale')") from error
        self.config = config
        self.num_envs = b = config.num_envs
        game = config.game  # envpool's ids are gymnasium-style: "SpaceInvaders-v5"
        task = (game if game[:1].isupper() else game.title().replace("_", "")) + "-v5"
        if task not in envpool.list_all_envs():
            raise ValueError(f"unknown Atari game {game!r} for envpool (no {task})")
        self._pool = envpool.make(
            task, env_type="gymnasium", num_envs=b, batch_size=1, seed=seed,
            num_threads=config.num_threads, episodic_life=config.episodic_life, reward_clip=False,
            noop_max=max(config.noop_max, 1), frame_skip=config.frame_skip, stack_num=config.frame_stack,
            img_height=ATARI_FRAME_SIZE, img_width=ATARI_FRAME_SIZE, gray_scale=True,
            use_fire_reset=True, use_inter_area_resize=True, max_episode_steps=
            # envpool counts agent steps
            max(1, config.max_episode_frames // config.frame_skip),
            repeat_action_probability=config.resolved_sticky_action_prob, full_action_space=False)
        self.num_actions = int(self._pool.action_space.n)
        self.obs_shape = (config.frame_stack, ATARI_FRAME_SIZE, ATARI_FRAME_SIZE)
        self._obs = np.zeros((b, *self.obs_shape), np.uint8)
        self._started = False

    def _recv(self, count: int) -> list[tuple[int, np.ndarray, float, bool, bool, bool]]:
        """`count` results (env id, obs, reward, terminated (a life or the game), truncated,
        game over), in completion order."""
        results = []
        for _ in range(count):
            obs, reward, terminated, truncated, info = self._pool.recv()
            results.append((int(info["env_id"][0]), obs[0], float(reward[0]), bool(terminated[0]),
                            bool(truncated[0]), bool(info["terminated"][0])))
        return results

    def reset(self) -> EnvStep:
        b = self.num_envs
        self._pool.async_reset()
        for env_id, obs, *_ in self._recv(b):
            self._obs[env_id] = obs
        self._started = True
        return EnvStep(self._obs.copy(), np.zeros(b, np.float32), np.ones(b, bool), np.zeros(b, bool))

    def step(self, actions: np.ndarray) -> EnvStep:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = _check_actions(actions, self.num_envs, self.num_actions)
        b = self.num_envs
        self._pool.send(actions, np.arange(b, dtype=np.int32))
        reward = np.zeros(b, np.float32)
        done = np.zeros(b, bool)
        episode_end = np.zeros(b, bool)
        for env_id, obs, rew, terminated, truncated, game_over in self._recv(b):
            reward[env_id], done[env_id] = rew, terminated or truncated
            episode_end[env_id] = game_over or truncated
            self._obs[env_id] = obs
        ids = np.flatnonzero(done).astype(np.int32)
        if ids.size:  # envpool's reset step, now; its action is ignored
            self._pool.send(np.zeros(ids.size, np.int32), ids)
            for env_id, obs, *_ in self._recv(ids.size):
                self._obs[env_id] = obs
        return EnvStep(self._obs.copy(), reward, done, episode_end)

    def close(self) -> None:
        self._pool.close()
        self._started = False


# --------------------------------------------------------------------------- MinAtar (pgx)


@functools.lru_cache(maxsize=None)
def _minatar_functions(game: str, sticky_action_prob: float, num_envs: int, limit: int):
    """(jitted reset(key), jitted step(carry, actions), pgx env), shared by adapters of one
    configuration so that each compiles once per process."""
    import jax
    import jax.numpy as jnp
    import pgx

    env = type(pgx.make(f"minatar-{game}"))(sticky_action_prob=sticky_action_prob)
    b = num_envs

    def to_obs(state):
        return jnp.transpose(state.observation, (0, 3, 1, 2)).astype(jnp.uint8)

    def reset(key):
        key, init_key = jax.random.split(key)
        state = jax.vmap(env.init)(jax.random.split(init_key, b))
        return (state, jnp.zeros(b, jnp.int32), key), to_obs(state)

    def step(carry, actions):
        state, steps, key = carry
        key, step_key, init_key = jax.random.split(key, 3)
        state = jax.vmap(env.step)(state, actions, jax.random.split(step_key, b))
        steps = steps + 1
        episode_end = state.terminated | state.truncated | (steps >= limit)
        fresh = jax.vmap(env.init)(jax.random.split(init_key, b))
        state = jax.tree.map(
            lambda new, old: jnp.where(episode_end.reshape((b,) + (1,) * (old.ndim - 1)), new, old),
            fresh, state)
        steps = jnp.where(episode_end, 0, steps)
        # pgx's rewards are per player; MinAtar has one.
        return (state, steps, key), (to_obs(state), state.rewards[:, 0].astype(jnp.float32), episode_end)

    return jax.jit(reset), jax.jit(step), env


class _MinAtar(_Closing):
    """MinAtar through pgx, all environments in one jitted vmap on the CPU (module docstring)."""

    def __init__(self, config: EnvConfig, seed: int):
        if importlib.util.find_spec("pgx") is None:
            raise ImportError("the minatar suite needs pgx: pip install pgx pgx-minatar")
        import jax
        self.config = config
        self.num_envs = b = config.num_envs
        self._reset_fn, self._step_fn, env = _minatar_functions(
            config.game, config.resolved_sticky_action_prob, b, config.max_episode_frames)
        self.num_actions = int(env.num_actions)
        height, width, channels = env.observation_shape
        self.obs_shape = (channels, height, width)
        self._cpu = jax.devices("cpu")[0]  # small batches: the host beats a transfer per step
        self._key = jax.device_put(jax.random.PRNGKey(seed), self._cpu)
        self._jax = jax
        self._carry = None
        self._closed = False

    def reset(self) -> EnvStep:
        if self._closed:
            raise RuntimeError("the environment is closed")
        key = self._key if self._carry is None else self._carry[2]
        self._carry, obs = self._reset_fn(key)
        b = self.num_envs
        return EnvStep(np.array(obs), np.zeros(b, np.float32), np.ones(b, bool), np.zeros(b, bool))

    def step(self, actions: np.ndarray) -> EnvStep:
        if self._carry is None:
            raise RuntimeError("call reset() before step()")
        actions = _check_actions(actions, self.num_envs, self.num_actions)
        self._carry, outputs = self._step_fn(self._carry, self._jax.device_put(actions, self._cpu))
        obs, reward, episode_end = (np.array(x) for x in self._jax.device_get(outputs))
        return EnvStep(obs, reward, episode_end.copy(), episode_end)

    def close(self) -> None:
        self._carry, self._closed = None, True
