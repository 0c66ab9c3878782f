"""The RL environment adapters against independent references: Atari against the official
wrapper stack (baselines' make_atari + wrap_deepmind, gym's TimeLimit) re-implemented here
over the raw emulator (`ale_py.ALEInterface`, one frame per act), MinAtar against pgx stepped
one environment at a time, `EpisodeStats` and `frame_rgb` against direct loops."""

import numpy as np
import pytest

from fastweights.rl import envs
from fastweights.rl.envs import EnvConfig, EnvStep, EpisodeStats, VectorEnv, make_env
from fastweights.testing import TOLERANCES

ale_py = pytest.importorskip("ale_py")


# --------------------------------------------------------------------------- references


def _area_weights(source: int, target: int) -> np.ndarray:
    """[target, source] INTER_AREA weights: each output pixel averages the input interval it
    covers, partial pixels weighted by their overlap."""
    scale = source / target
    weights = np.zeros((target, source))
    for t in range(target):
        low, high = t * scale, (t + 1) * scale
        for s in range(int(np.floor(low)), int(np.ceil(high))):
            weights[t, s] = (min(high, s + 1) - max(low, s)) / scale
    return weights


def _sparse(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights) [target, 4] of the (at most 4) inputs of each output pixel: a
    gather is much cheaper than a dense product on a busy CPU."""
    indices = np.argsort(weights == 0, axis=1, kind="stable")[:, :4]
    return indices, np.take_along_axis(weights, indices, axis=1)


_ROWS, _COLS = _sparse(_area_weights(210, 84)), _sparse(_area_weights(160, 84))


def _warp(screen: np.ndarray) -> np.ndarray:
    """WarpFrame's 84x84 INTER_AREA resize of a grayscale screen, in float64."""
    (row_index, row_weight), (col_index, col_weight) = _ROWS, _COLS
    rows = np.einsum("tk,tkw->tw", row_weight, screen.astype(np.float64)[row_index])  # [84, 160]
    return np.rint(np.einsum("vk,tvk->tv", col_weight, rows[:, col_index]))  # [84, 84]


class OfficialAtari:
    """torchbeast's Atari stack for one environment, written from baselines' wrappers:
    gym NoFrameskip-v4 (+ TimeLimit in frames) -> NoopReset (0 no-ops here) -> MaxAndSkip ->
    EpisodicLife -> FireReset -> WarpFrame -> FrameStack, max-pooling grayscale screens
    (as ale-py does; baselines pools RGB, see the module docstring of fastweights.rl.envs)."""

    def __init__(self, game: str, seed: int, *, episodic_life: bool, max_frames: int,
                 frame_skip: int = 4, stack: int = 4):
        self.ale = ale_py.ALEInterface()
        self.ale.setLoggerMode(ale_py.LoggerMode.Error)
        self.ale.setInt("random_seed", seed)
        self.ale.setFloat("repeat_action_probability", 0.0)
        self.ale.loadROM(ale_py.roms.get_rom_path(game))
        self.action_set = self.ale.getMinimalActionSet()
        self.has_fire = ale_py.Action.FIRE in self.action_set
        self.episodic_life, self.max_frames = episodic_life, max_frames
        self.frame_skip, self.stack_size = frame_skip, stack
        self.pool = [np.zeros((210, 160), np.uint8), np.zeros((210, 160), np.uint8)]
        self.was_real_done, self.lives, self.elapsed = True, 0, 0

    def _raw_step(self, action):  # one emulator frame; TimeLimit counts frames
        reward = self.ale.act(self.action_set[action])
        self.elapsed += 1
        return reward, self.ale.game_over() or self.elapsed >= self.max_frames

    def _skip_step(self, action):  # MaxAndSkipEnv
        total = 0.0
        for k in range(self.frame_skip):
            reward, done = self._raw_step(action)
            if k == self.frame_skip - 2:
                self.pool[0] = self.ale.getScreenGrayscale()
            if k == self.frame_skip - 1:
                self.pool[1] = self.ale.getScreenGrayscale()
            total += reward
            if done:
                break
        return np.maximum(self.pool[0], self.pool[1]), total, done

    def _life_step(self, action):  # EpisodicLifeEnv.step
        obs, reward, done = self._skip_step(action)
        self.was_real_done = done
        lives = self.ale.lives()
        if self.episodic_life and 0 < lives < self.lives:
            done = True
        self.lives = lives
        return obs, reward, done

    def _life_reset(self):  # EpisodicLifeEnv.reset (a real reset without EpisodicLifeEnv)
        if self.was_real_done or not self.episodic_life:
            self.ale.reset_game()
            self.elapsed = 0
            obs = self.ale.getScreenGrayscale()
        else:
            obs, _, _ = self._skip_step(0)
        self.lives = self.ale.lives()
        return obs

    def _fire_reset(self):  # FireResetEnv.reset
        obs = self._life_reset()
        if self.has_fire:
            obs, _, done = self._life_step(1)
            if done:
                self._life_reset()
            obs, _, done = self._life_step(2)
            if done:
                self._life_reset()
        return obs

    def reset(self) -> np.ndarray:
        self.frames = [_warp(self._fire_reset())] * self.stack_size  # FrameStack.reset
        return np.stack(self.frames)

    def step(self, action):
        """(obs [stack, 84, 84], reward, done, episode_end) with torchbeast's reset on done."""
        obs, reward, done = self._life_step(action)
        episode_end = self.was_real_done
        if done:
            self.frames = [_warp(self._fire_reset())] * self.stack_size
        else:
            self.frames = self.frames[1:] + [_warp(obs)]
        return np.stack(self.frames), reward, done, episode_end


def _assert_frames_close(actual, expected, label):
    tolerance = TOLERANCES["area_resize_uint8"]
    error = np.abs(np.asarray(actual, np.float64) - expected)
    assert error.max() <= tolerance["max_abs"], f"{label}: max abs error {error.max()}"
    assert np.mean(error > 0) <= tolerance["max_fraction"], f"{label}: {np.mean(error > 0):.2%} pixels differ"


def _run_against_official(config: EnvConfig, actions: np.ndarray, seed: int = 3):
    """Steps the adapter and one OfficialAtari per environment with `actions` [T, B] and
    asserts every step equal (frames to the resize tolerance); returns (the adapter's
    steps, the references)."""
    rom = envs._ale_rom_id(config.game)
    references = [OfficialAtari(rom, s, episodic_life=config.episodic_life, max_frames=config.max_episode_frames,
                                frame_skip=config.frame_skip, stack=config.frame_stack)
                  for s in envs._env_seeds(seed, config.num_envs)]
    with make_env(config, seed=seed) as env:
        first = env.reset()
        for i, reference in enumerate(references):
            _assert_frames_close(first.obs[i], reference.reset(), f"reset env {i}")
        steps = []
        for t, row in enumerate(actions):
            step = env.step(row)
            for i, reference in enumerate(references):
                obs, reward, done, episode_end = reference.step(int(row[i]))
                label = f"step {t} env {i}"
                _assert_frames_close(step.obs[i], obs, label)
                assert (step.reward[i], step.done[i], step.episode_end[i]) == (reward, done, episode_end), label
            steps.append(step)
    return steps, references


# --------------------------------------------------------------------------- Atari


def test_atari_reset_shapes_and_interface():
    config = EnvConfig(suite="atari", game="Breakout", num_envs=3, frame_stack=3)
    with make_env(config, seed=0) as env:
        assert isinstance(env, VectorEnv)
        assert (env.num_envs, env.obs_shape) == (3, (3, 84, 84))
        assert env.num_actions == len(_loaded("breakout").getMinimalActionSet())
        first = env.reset()
        assert first.obs.shape == (3, 3, 84, 84) and first.obs.dtype == np.uint8
        assert first.reward.dtype == np.float32 and not first.reward.any()
        assert first.done.dtype == bool and first.done.all() and not first.episode_end.any()
        assert (first.obs == first.obs[:, -1:]).all()  # FrameStack.reset repeats the frame
        step = env.step(np.zeros(3, np.int64))
        assert step.obs.shape == (3, 3, 84, 84) and step.obs.dtype == np.uint8
        assert (step.obs[:, :-1] == first.obs[:, 1:]).all()  # the stack shifts by one frame
        with pytest.raises(ValueError, match="actions must be"):
            env.step(np.zeros(2, np.int32))
        with pytest.raises(ValueError, match="actions must be in"):
            env.step(np.full(3, env.num_actions))
    with make_env(config, seed=0) as env, pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(3, np.int32))


def _loaded(rom: str):
    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.loadROM(ale_py.roms.get_rom_path(rom))
    return ale


def test_atari_life_loss_fire_and_game_over_match_official_stack():
    """Breakout with NOOP only: the adapter's FIRE after each life loss keeps the game going
    through every life to game over and into the next game, step for step as the official
    stack; done at each life loss, episode_end only at game over."""
    config = EnvConfig(suite="atari", game="Breakout", num_envs=2, noop_max=0)
    steps, _ = _run_against_official(config, np.zeros((260, 2), np.int32))
    lives_per_game = _loaded("breakout").lives()
    done = np.stack([s.done for s in steps])
    episode_end = np.stack([s.episode_end for s in steps])
    for i in range(2):
        game_ends = np.flatnonzero(episode_end[:, i])
        assert game_ends.size >= 1
        # every life of the first game ends with a done; the last of them is the game over
        assert done[: game_ends[0] + 1, i].sum() == lives_per_game
        assert done[game_ends[0] + 1:, i].any()  # the next game's reset FIRE launched the ball
        assert np.all(episode_end[:, i] <= done[:, i])
        for t in np.flatnonzero(done[:, i]):
            assert (steps[t].obs[i] == steps[t].obs[i, -1:]).all()  # a fresh stack
    assert np.all(np.stack([s.reward for s in steps]) >= 0)


def test_atari_without_episodic_life_noop_agent_stalls_like_official_stack():
    """Without EpisodicLifeEnv nobody presses FIRE after a life loss: the ball never
    relaunches, so after the first life (launched by the reset's FIRE) nothing ends."""
    config = EnvConfig(suite="atari", game="Breakout", num_envs=1, noop_max=0, episodic_life=False)
    steps, references = _run_against_official(config, np.zeros((150, 1), np.int32))
    assert not any(s.done.any() for s in steps)
    assert references[0].ale.lives() == _loaded("breakout").lives() - 1


@pytest.mark.parametrize("game", ["SpaceInvaders", "Asterix"])
def test_atari_frame_skip_lives_raw_rewards_and_time_limit_match_official_stack(game):
    """Random actions: rewards are the raw sums over the skipped frames (several points per
    alien or object: not clipped), frames max-pooled and resized as the reference, life
    losses reset as the official stack (Space Invaders with FIRE, Asterix without), and the
    time limit (in frames) ends the game with episode_end."""
    config = EnvConfig(suite="atari", game=game, num_envs=2, noop_max=0, max_episode_frames=601)
    num_actions = len(_loaded(envs._ale_rom_id(game)).getMinimalActionSet())
    actions = np.random.default_rng(0).integers(num_actions, size=(200, 2))
    steps, _ = _run_against_official(config, actions)
    rewards = np.stack([s.reward for s in steps])
    done = np.stack([s.done for s in steps])
    episode_end = np.stack([s.episode_end for s in steps])
    assert rewards.max() > 1
    assert (done & ~episode_end).any() and episode_end.any()


def test_atari_deterministic_given_seed():
    config = EnvConfig(suite="atari", game="Pong", num_envs=3)  # noop_max 30: seeded no-ops
    actions = np.random.default_rng(1).integers(6, size=(30, 3))

    def run(seed):
        with make_env(config, seed=seed) as env:
            return [env.reset()] + [env.step(a) for a in actions]

    first, again, other = run(5), run(5), run(6)
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert any((a.obs != b.obs).any() for a, b in zip(first, other))


# --------------------------------------------------------------------------- MinAtar


def _pgx_single_env_run(game: str, seed: int, num_envs: int, actions: np.ndarray, limit: int):
    """The documented key schedule, one environment at a time with pgx's own init/step."""
    import jax
    import pgx

    env = type(pgx.make(f"minatar-{game}"))(sticky_action_prob=0.1)
    init, step = jax.jit(env.init), jax.jit(env.step)
    split = jax.jit(jax.random.split, static_argnums=1)
    key, init_key = split(jax.random.PRNGKey(seed), 2)
    init_keys = np.asarray(split(init_key, num_envs))  # numpy: indexing compiles nothing
    states = [init(init_keys[i]) for i in range(num_envs)]
    lengths = [0] * num_envs

    def obs(state):
        return np.asarray(state.observation).transpose(2, 0, 1).astype(np.uint8)

    rows = [(np.stack([obs(s) for s in states]), np.zeros(num_envs), np.ones(num_envs, bool),
             np.zeros(num_envs, bool), np.zeros(num_envs, bool))]
    for row in actions:
        key, step_key, init_key = split(key, 3)
        step_keys, init_keys = np.asarray(split(step_key, num_envs)), np.asarray(split(init_key, num_envs))
        frames, rewards, ends, truncations = [], [], [], []
        for i in range(num_envs):
            state = step(states[i], int(row[i]), step_keys[i])
            lengths[i] += 1
            terminated = bool(state.terminated)
            truncated = not terminated and lengths[i] >= limit
            rewards.append(float(state.rewards[0]))
            if terminated or truncated:
                state, lengths[i] = init(init_keys[i]), 0
            states[i] = state
            frames.append(obs(state))
            ends.append(terminated or truncated)
            truncations.append(truncated)
        ends = np.array(ends)
        rows.append((np.stack(frames), np.array(rewards), ends, ends, np.array(truncations)))
    return rows


def test_minatar_matches_pgx_single_env_loop_and_is_deterministic():
    config = EnvConfig(suite="minatar", game="breakout", num_envs=3, max_episode_frames=12)
    actions = np.random.default_rng(0).integers(3, size=(70, 3))
    with make_env(config, seed=11) as env:
        assert env.num_actions == 3 and env.obs_shape == (4, 10, 10)
        adapter = [env.reset()] + [env.step(a) for a in actions]
        again = [env.reset()] + [env.step(a) for a in actions[:5]]  # a second reset continues the keys
    reference = _pgx_single_env_run("breakout", 11, 3, actions, limit=12)
    for t, (step, (obs, reward, done, episode_end, _)) in enumerate(zip(adapter, reference)):
        assert step.obs.dtype == np.uint8 and step.reward.dtype == np.float32
        np.testing.assert_array_equal(step.obs, obs, err_msg=f"step {t}")
        np.testing.assert_array_equal(step.reward, reward, err_msg=f"step {t}")
        np.testing.assert_array_equal(step.done, done, err_msg=f"step {t}")
        np.testing.assert_array_equal(step.episode_end, episode_end, err_msg=f"step {t}")
    ends = np.stack([r[3] for r in reference[1:]])
    truncations = np.stack([r[4] for r in reference[1:]])
    assert (ends & ~truncations).any() and truncations.any()  # both kinds of episode end
    assert any((a.obs != b.obs).any() for a, b in zip(adapter, again))
    with make_env(config, seed=11) as env:
        repeat = [env.reset()] + [env.step(a) for a in actions[:20]]
    for a, b in zip(adapter, repeat):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------- generic parts


def test_episode_stats_against_a_direct_loop():
    rng = np.random.default_rng(0)
    num_envs, length, frame_skip = 3, 60, 4
    done = rng.random((length, num_envs)) < 0.2
    episode_end = done & (rng.random((length, num_envs)) < 0.5)
    rewards = rng.integers(-2, 5, size=(length, num_envs)).astype(np.float32)
    stream = [EnvStep(np.zeros((num_envs, 1, 1, 1), np.uint8), rewards[t], done[t], episode_end[t])
              for t in range(length)]
    stats = EpisodeStats(frames_per_step=frame_skip)
    for step in stream[:30]:
        stats.update(step)
    first = stats.pop()
    for step in stream[30:]:
        stats.update(step)
    second = stats.pop()

    expected = [dict(life_returns=[], game_returns=[], game_frames=[]) for _ in range(2)]
    life, game, steps = [0.0] * num_envs, [0.0] * num_envs, [0] * num_envs
    for t in range(length):
        part = expected[t >= 30]
        for i in range(num_envs):
            life[i] += float(rewards[t, i])
            game[i] += float(rewards[t, i])
            steps[i] += 1
            if done[t, i]:
                part["life_returns"].append(life[i])
                life[i] = 0.0
        for i in range(num_envs):
            if episode_end[t, i]:
                part["game_returns"].append(game[i])
                part["game_frames"].append(steps[i] * frame_skip)
                game[i], steps[i] = 0.0, 0
    assert first == expected[0] and second == expected[1]
    assert len(first["game_returns"]) > 0 and len(second["game_returns"]) > 0
    assert stats.pop() == dict(life_returns=[], game_returns=[], game_frames=[])
    with pytest.raises(ValueError, match="episode_end without done"):
        stats.update(stream[0]._replace(done=np.zeros(num_envs, bool), episode_end=np.ones(num_envs, bool)))


def test_frame_rgb_minatar_and_atari():
    rng = np.random.default_rng(0)
    minatar = (rng.random((4, 10, 10)) < 0.3).astype(np.uint8)
    image = envs.frame_rgb(minatar)
    palette = envs.minatar_palette(4)
    assert len({tuple(c) for c in palette}) == 4 and image.shape == (80, 80, 3) and image.dtype == np.uint8
    expected = np.zeros((10, 10, 3), np.uint8)
    for y in range(10):
        for x in range(10):
            active = [c for c in range(4) if minatar[c, y, x]]
            if active:
                expected[y, x] = palette[max(active)]
    np.testing.assert_array_equal(image, np.kron(expected, np.ones((8, 8, 1), np.uint8)))
    atari = rng.integers(0, 256, size=(4, 84, 84), dtype=np.uint8)
    gray = envs.frame_rgb(atari)
    assert gray.shape == (84, 84, 3)
    for channel in range(3):
        np.testing.assert_array_equal(gray[..., channel], atari[-1])
    with pytest.raises(ValueError, match="uint8"):
        envs.frame_rgb(atari.astype(np.float32))


def test_config_validation_and_frames_per_step():
    assert envs.frames_per_step(EnvConfig(suite="atari", game="Pong", frame_skip=3)) == 3
    assert envs.frames_per_step(EnvConfig(suite="minatar", frame_skip=3)) == 1
    assert EnvConfig(suite="atari", game="Pong").resolved_sticky_action_prob == 0.0
    assert EnvConfig().resolved_sticky_action_prob == 0.1
    assert (EnvConfig().resolved_backend, EnvConfig(suite="atari").resolved_backend) == ("pgx", "ale")
    for bad in (dict(suite="nes"), dict(game="pong"), dict(backend="ale"), dict(num_envs=0),
                dict(suite="atari", backend="pgx"), dict(sticky_action_prob=1.5), dict(noop_max=-1)):
        with pytest.raises(ValueError):
            EnvConfig(**bad)
    with pytest.raises(ValueError, match="unknown Atari game"):
        make_env(EnvConfig(suite="atari", game="NoSuchGame"), seed=0)
    assert envs._ale_rom_id("MsPacman") == envs._ale_rom_id("ms_pacman") == "ms_pacman"


# --------------------------------------------------------------------------- envpool (optional)


def test_envpool_backend_semantics():
    pytest.importorskip("envpool")
    config = EnvConfig(suite="atari", game="Breakout", num_envs=2, backend="envpool")
    with make_env(config, seed=0) as env:
        first = env.reset()
        assert first.obs.shape == (2, 4, 84, 84) and first.done.all() and not first.episode_end.any()
        steps = [env.step(np.zeros(2, np.int32)) for _ in range(300)]
    done = np.stack([s.done for s in steps])
    episode_end = np.stack([s.episode_end for s in steps])
    lives_per_game = _loaded("breakout").lives()
    for i in range(2):  # envpool presses FIRE after each life loss: NOOP-only reaches game over
        game_ends = np.flatnonzero(episode_end[:, i])
        assert game_ends.size >= 1 and done[: game_ends[0] + 1, i].sum() == lives_per_game
