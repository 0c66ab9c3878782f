"""Language-model tools: the paper's evaluation protocols and generation.

- `sliding_window(model, tokens, window=256, stride=1)`: limited-context perplexity (every
  token from a fresh state over the window before it, the paper's number);
- `full_context(model, tokens, segment=256)`: one stream with the state carried (the
  "+ full context" models' number);
- `segments(model, tokens, batch_size=10, segment=256)`: non-overlapping segments (the
  in-training validation number);
- `stream(model, prompt_ids, num_tokens, ...)`: yields sampled token ids one by one;
  `sample(log_probs, key, temperature=, top_k=, top_p=)`: the sampler it and
  `LanguageModel.generate` share.

`tokens` is a split as a 1-D array of ids (a NumPy array or a read-only `np.memmap`).
"""

from fastweights.lm.evaluation import full_context, segments, sliding_window
from fastweights.lm.generation import sample, stream, token_key

__all__ = ["full_context", "sample", "segments", "sliding_window", "stream", "token_key"]
