"""Text generation: `sample` (temperature, top-k, top-p; `fastweights.nn.sampling`) and
`stream`, which yields each token as soon as it is drawn.

`stream` and `LanguageModel.generate` share the sampler and the key schedule (token n is
drawn with `jax.random.fold_in(key, n)`), so for `key = jax.random.key(seed)`
`list(stream(model, prompt, n, seed=seed, ...))` equals `model.generate(prompt[None], n,
key=key, ...)[0][0]` token for token.
"""

from __future__ import annotations

from collections.abc import Generator

import jax
import jax.numpy as jnp
import numpy as np

from fastweights.lm._compiled import bind
from fastweights.nn.common import check_tokens
from fastweights.nn.models import LanguageModel, ModelState
from fastweights.nn.sampling import check_sampling, sample, token_key

__all__ = ["sample", "stream", "token_key"]


def _step(model, tokens, state, key, n, *, temperature, top_k, top_p):
    """Feeds `tokens [1, T]` and draws token `n` from the last position's distribution:
    `(token [1] int32, log_probs [1, V], state)`."""
    hidden, state = model(tokens, state)
    log_probs = model.log_probs(hidden[:, -1])
    token = sample(log_probs, token_key(key, n), temperature=temperature, top_k=top_k, top_p=top_p)
    return token, log_probs, state


def _bind_step(model: LanguageModel, options: tuple):
    """`_step` compiled for `model`'s current parameters and the sampling `options`."""
    temperature, top_k, top_p = options
    return bind(_step, model, temperature=temperature, top_k=top_k, top_p=top_p)


def _steps(step, prompt: jax.Array, state: ModelState, key: jax.Array,
           num_tokens: int) -> Generator[tuple[jax.Array, jax.Array], None, ModelState]:
    """Yields `(token [1], log_probs [1, V])` device arrays of the bound `step`, one step
    ahead: token n+1 is dispatched before token n is handed out. Returns the state that has
    consumed the prompt and all but the last token (as `generate`)."""
    token, log_probs, state = step(prompt, state, key, jnp.int32(0))
    for n in range(1, num_tokens):
        nxt, next_log_probs, next_state = step(token[:, None], state, key, jnp.int32(n))
        yield token, log_probs
        token, log_probs, state = nxt, next_log_probs, next_state
    yield token, log_probs
    return state


def _tokens(steps) -> Generator[int, None, ModelState]:
    """The ids of `_steps` as Python ints, passing its return value (the state) on."""
    while True:
        try:
            token, _ = next(steps)
        except StopIteration as stop:
            return stop.value
        yield int(token[0])


def stream(model: LanguageModel, prompt_ids, num_tokens: int, *, seed: int = 0, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None,
           state: ModelState | None = None) -> Generator[int, None, ModelState]:
    """Samples `num_tokens` tokens after `prompt_ids` (1-D, at least one id) and yields each
    id as a Python int as soon as it is drawn.

    One compiled call for the prompt, then one compiled single-token step per token with the
    state carried (fixed size: memory does not grow with `num_tokens`). Eval mode, the
    caller's module unchanged. Token n is drawn by `sample` with
    `fold_in(jax.random.key(seed), n)`. `state`: a batch-1 state to continue from (None: a
    fresh one). The generator's return value (`StopIteration.value`) is the final state,
    which has consumed the prompt and all but the last token, as `LanguageModel.generate`.
    Arguments are checked when `stream` is called, not at the first token.
    """
    if not isinstance(model, LanguageModel):
        raise TypeError(f"model must be a fastweights.nn.LanguageModel, got {type(model).__name__}")
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, (int, np.integer)) or num_tokens < 0:
        raise ValueError(f"num_tokens must be an int >= 0, got {num_tokens!r}")
    options = check_sampling(temperature, top_k, top_p)
    prompt = np.asarray(prompt_ids)
    if prompt.ndim != 1 or prompt.shape[0] == 0:
        raise ValueError(f"prompt_ids must be a non-empty 1-D array of token ids, got shape {prompt.shape}")
    check_tokens(prompt, model.config.vocab_size, "prompt_ids")
    if state is None:
        state = model.init_state(1)
    elif not isinstance(state, ModelState):
        raise TypeError(f"state must be a ModelState, got {type(state).__name__}")
    key = jax.random.key(int(seed))
    if num_tokens == 0:
        return _empty(state)
    steps = _steps(_bind_step(model, options), jnp.asarray(prompt[None], jnp.int32), state, key, int(num_tokens))
    return _tokens(steps)


def _empty(state: ModelState) -> Generator[int, None, ModelState]:
    return state
    yield  # noqa: B901 (a generator that yields nothing)
