"""The generic fast-weight layer against an independent NumPy float64 layer: projection in the
official head-major layout, feature maps, sigmoids, the NumPy core loop, scale, output
projection. The per-id settings below are written from PAPER_SPEC 2 and 9, not from
`fastweights.nn.config`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import fastweights as fw
import numpy_reference as ref
from fastweights.nn.common import logical_axes
from fastweights.nn.config import LayerConfig
from fastweights.nn.layer import FastWeightLayer
from fastweights.testing import assert_close

B, T, D, H, d = 2, 5, 8, 2, 4

# id -> (variant, q/k feature map, sum-norm eps or None for no sum norm, 1/sqrt(d) scale, extra)
SETTINGS = {
    "lm:34": ("linear_transformer", "elu", None, True, dict(normalize=True)),
    "alg:8": ("linear_transformer", "elu", None, False, dict(normalize=False)),
    "lm:24": ("delta_net", "elu", 0.0, True, {}),
    "lm:26": ("delta_net", "dpfp", 0.0, True, {}),
    "alg:2": ("delta_net", "elu", 0.0, False, {}),
    "lm:54": ("delta_mlp", "elu", 1e-5, False, dict(depth=1)),
    "lm:54/2": ("delta_mlp", "elu", 1e-5, False, dict(depth=2)),
    "lm:64": ("delta_delta_net", "elu", 1e-5, False, {}),
    "lm:124": ("delta_rnn", "softmax", None, False, dict(version=1)),
    "lm:134": ("delta_rnn", "elu", 0.0, True, dict(version=2)),
    "alg:3": ("delta_rnn", "elu", 0.0, False, dict(version=2)),
    "lm:224": ("delta_lstm", "elu", 0.0, False, dict(version=1)),
    "lm:234": ("delta_lstm", "elu", 0.0, True, dict(version=2)),
    "lm:244": ("delta_lstm", "elu", 0.0, True, dict(version=3)),
    "lm:254": ("delta_lstm", "elu", 0.0, True, dict(version=4)),
    "lm:934": ("recurrent_delta_net", None, None, True, {}),
    "alg:7": ("recurrent_delta_net", None, None, False, {}),
    "rl:delta_net": ("delta_net", "elu", 1e-5, False, {}),
    "rl:linear_transformer": ("linear_transformer", "elu", 1e-5, False, dict(normalize=False)),
    "rl:delta_rnn": ("delta_rnn", "softmax", None, False, dict(version=2)),
    # Variants beyond the paper, by canonical name: their settings sit beside their oracle.
    **{name: (name, *settings) for name, settings in ref.LAYER_SETTINGS.items()},
}


def _config(case):
    if case.startswith("rl:"):
        return LayerConfig(case[3:], convention="rl")
    if case == "lm:54/2":
        return LayerConfig("lm:54", depth=2)
    return LayerConfig(case)


def _dpfp(x, nu=2):
    r = np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)])
    return np.concatenate([r * np.roll(r, j) for j in range(1, nu + 1)])


def _phi(x, fmap, eps):
    """Feature map of one vector, then the optional sum normalisation."""
    x = {"elu": ref.elu1, "softmax": ref.softmax, "dpfp": _dpfp}[fmap](x)
    return x if eps is None else ref.sumnorm(x, eps)


def numpy_layer(case, layer, x):
    """The layer in float64 NumPy: the projection, the variant's `numpy_reference.layer_<variant>`,
    the scale and the output projection."""
    variant, fmap, eps, scale, extra = SETTINGS[case]
    W_in = np.asarray(layer.in_proj.kernel[...], np.float64)          # [D, H, P]
    W_out = np.asarray(layer.out_proj.kernel[...], np.float64)        # [H, d, D]
    P = np.einsum("btD,DhP->bthP", np.asarray(x, np.float64), W_in)
    phi = lambda a: ref._apply(lambda y: _phi(y, fmap, eps), a)  # noqa: E731
    slow = {} if layer.slow is None else {n: np.asarray(p[...], np.float64) for n, p in layer.slow.items()}
    out = getattr(ref, f"layer_{variant}")(P, phi, d, 4 * D // H, slow, **extra)
    if scale:
        out = out / np.sqrt(d)
    return np.einsum("bthd,hdD->btD", out, W_out)


def test_every_layer_variant_has_a_numpy_case():
    covered = {variant for variant, *_ in SETTINGS.values()}
    assert covered == {n for n, v in fw.VARIANTS.items() if v.layer is not None}


@pytest.mark.parametrize("case", list(SETTINGS))
def test_layer_matches_numpy(case):
    layer = FastWeightLayer(_config(case), D, H, d, init="pytorch", rngs=nnx.Rngs(0),
                            **({"dropout": 0.0}))
    x = jax.random.normal(jax.random.key(1), (B, T, D))
    y, _ = layer(x)
    assert_close(y, numpy_layer(case, layer, x), "float32_vs_float64", name=case)


# Per-layer attention-sublayer parameters at D=128, H=8, d=16 (PAPER_SPEC 8.1), minus the
# sublayer's LayerNorm (256), which belongs to the block.
PAPER_LAYER_PARAMS = {"lm:34": 65_792, "lm:24": 66_816, "lm:134": 100_608, "lm:124": 100_608,
                      "lm:64": 100_608, "lm:254": 268_544, "lm:224": 268_544, "lm:934": 73_088,
                      "lm:54": 362_784}


@pytest.mark.parametrize("case", list(PAPER_LAYER_PARAMS))
def test_layer_parameter_counts(case):
    layer = nnx.eval_shape(lambda: FastWeightLayer(LayerConfig(case), 128, 8, 16, rngs=nnx.Rngs(0)))
    count = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(layer, nnx.Param)))
    assert count == PAPER_LAYER_PARAMS[case] - 256


@pytest.mark.parametrize("case", ["lm:254", "lm:934", "lm:54"])
def test_every_parameter_axis_is_named(case):
    layer = FastWeightLayer(LayerConfig(case), 16, 2, 8, rngs=nnx.Rngs(0))
    axes = logical_axes(layer)
    shapes = {tuple(str(p) for p in path): v.shape
              for path, v in nnx.to_flat_state(nnx.state(layer, nnx.Param))}
    assert len(axes) == len(shapes)
    for path, names in axes.items():
        assert len(names) == len(shapes[tuple(str(p) for p in path)]) and all(names), (path, names)
    assert axes[("in_proj", "kernel")] == ("embed", "heads", "head_proj")
    assert axes[("out_proj", "kernel")] == ("heads", "head_dim", "embed")


@pytest.mark.parametrize("config, message", [
    (LayerConfig("nope"), "unknown variant"),
    (LayerConfig("delta_net", version=2), "has no versions"),
    (LayerConfig("delta_rnn", version=3), "versions 1 and 2"),
    (LayerConfig("delta_net", normalize=True), "linear_transformer only"),
    (LayerConfig("rdn", feature_map="elu_p1"), "no feature_map"),
    (LayerConfig("delta_net", feature_map="relu"), "unknown feature_map"),
    (LayerConfig("delta_net", convention="torch"), "unknown convention"),
    (LayerConfig("lm:4"), "does not provide"),
    (LayerConfig("transformer"), "baseline"),
])
def test_bad_configs_are_refused(config, message):
    with pytest.raises(ValueError, match=message):
        FastWeightLayer(config, 8, 2, 4, rngs=nnx.Rngs(0))


def test_bad_input_shape():
    layer = FastWeightLayer(LayerConfig("delta_net"), 8, 2, 4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"\[batch, time, model_dim\]"):
        layer(jnp.zeros((5, 8)))
    with pytest.raises(ValueError, match="inputs ending in"):
        layer(jnp.zeros((2, 5, 7)))
