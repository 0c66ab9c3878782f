"""Paper presets: parameter counts equal those computed from the official code (PAPER_SPEC
8.1), every parameter carries logical axis names, and unknown names get clear errors."""


import pytest
from flax import nnx

from fastweights.nn import presets
from fastweights.nn.common import logical_axes

EMBEDDING = 34_538_202      # V = 267,735: embedding, output bias and cluster parameters
NON_EMBEDDING = {
    "transformer": 9_480_192, "linear_transformer": 9_480_192, "delta_net": 9_496_576,
    "delta_mlp": 14_232_064, "delta_mlp_depth2": 19_508_224, "delta_delta_net": 10_037_248,
    "delta_rnn": 10_037_248, "delta_lstm": 12_724_224, "rdn": 9_596_928,
    "delta_rnn_full_context": 10_037_248, "rdn_full_context": 9_596_928,
}


@pytest.mark.parametrize("model", list(NON_EMBEDDING))
def test_wt103_parameter_counts_equal_the_official_code(model):
    counts = presets.count_params(presets.get(f"wt103_small_{model}"))
    assert counts == {"embedding": EMBEDDING, "non_embedding": NON_EMBEDDING[model],
                      "total": EMBEDDING + NON_EMBEDDING[model]}


def test_every_wt103_model_has_a_preset():
    assert {n for n in presets.names() if n.startswith("wt103_small_")} == \
        {f"wt103_small_{m}" for m in NON_EMBEDDING}


@pytest.mark.parametrize("name", presets.names())
def test_every_parameter_has_logical_axis_names(name):
    model = nnx.eval_shape(lambda: presets.build(presets.get(name)))
    shapes = {tuple(path): v.shape for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    axes = logical_axes(model)
    assert axes.keys() == shapes.keys()
    for path, names in axes.items():
        assert len(names) == len(shapes[path]) and all(names), (path, names)
    # Heads are the model-parallel axis: every head-split projection names it.
    assert any("heads" in names for names in axes.values()) or "lstm" in name


def test_full_context_presets_follow_the_readme_command():
    config = presets.get("wt103_small_rdn_full_context")
    assert (config.wiring, config.positional) == ("post_ln", "none")
    assert presets.get("wt103_small_rdn").wiring == "lm_pre_ln"


def test_unknown_preset_or_field():
    with pytest.raises(ValueError, match="unknown model preset 'wt103_tiny'.*wt103_small_delta_net"):
        presets.get("wt103_tiny")
    with pytest.raises(ValueError, match="no field.*num_layer.*valid:.*num_layers"):
        presets.get("wt103_small_delta_net", num_layer=2)
    assert presets.get("wt103_small_delta_net", num_layers=2).num_layers == 2
