"""Flax NNX layers and models (`pip install fastweights[nn]`).

    >>> import jax
    >>> from fastweights import nn
    >>> config = nn.presets.get("wt103_small_delta_net", vocab_size=1000, num_layers=2, cutoffs=(200, 500))
    >>> model = nn.presets.build(config, rngs=0)
    >>> tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 9), 0, 1000)
    >>> hidden, state = model(tokens[:, :-1])                 # hidden [B, T, D]
    >>> loss = model.nll(hidden, tokens[:, 1:]).mean()        # adaptive softmax
    >>> hidden.shape, bool(jax.numpy.isfinite(loss))
    ((2, 8, 128), True)

Every layer and model has `init_state(batch_size)` and a call `(inputs, state) -> (out,
state)`; a sequence processed in segments or token by token equals one pass.
"""

from fastweights.nn import presets
from fastweights.nn.attention import SoftmaxAttention
from fastweights.nn.blocks import WIRINGS, Block, BlockStack, FeedForward
from fastweights.nn.common import Embedding, LayerNorm, Linear, check_tokens, logical_axes
from fastweights.nn.config import LayerConfig, LMConfig, RLCoreConfig, SequenceConfig, resolve_layer
from fastweights.nn.layer import FastWeightLayer
from fastweights.nn.models import LanguageModel, ModelState, RLCore, SequenceModel
from fastweights.nn.output import AdaptiveSoftmax, Softmax
from fastweights.nn.recurrent import LSTM

__all__ = [
    "AdaptiveSoftmax", "Block", "BlockStack", "Embedding", "FastWeightLayer", "FeedForward",
    "LMConfig", "LSTM", "LanguageModel", "LayerConfig", "LayerNorm", "Linear", "ModelState",
    "RLCore", "RLCoreConfig", "SequenceConfig", "SequenceModel", "Softmax", "SoftmaxAttention",
    "WIRINGS", "check_tokens", "logical_axes", "presets", "resolve_layer",
]
