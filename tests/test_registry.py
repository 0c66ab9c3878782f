"""The registry resolves every official id, spelling and paper name, and refuses the rest."""

import pytest

import fastweights as fw
from fastweights import registry

# Written from PAPER_SPEC 2 (ID map) and its README mapping, not from registry.py.
OFFICIAL_LM = {
    2: ("transformer", {}), 4: ("linear_transformer", {}), 34: ("linear_transformer", {}),
    24: ("delta_net", {}), 26: ("delta_net", {"feature_map": "dpfp"}), 54: ("delta_mlp", {}),
    64: ("delta_delta_net", {}), 124: ("delta_rnn", {"version": 1}), 134: ("delta_rnn", {"version": 2}),
    224: ("delta_lstm", {"version": 1}), 234: ("delta_lstm", {"version": 2}),
    244: ("delta_lstm", {"version": 3}), 254: ("delta_lstm", {"version": 4}),
    934: ("recurrent_delta_net", {}),
}
OFFICIAL_ALG = {
    0: ("lstm", {}), 1: ("transformer", {}), 2: ("delta_net", {}), 3: ("delta_rnn", {"version": 2}),
    7: ("recurrent_delta_net", {}), 8: ("linear_transformer", {"normalize": False}),
}


OFFICIAL = [("lm", "attn_type", code, *OFFICIAL_LM[code]) for code in sorted(OFFICIAL_LM)]
OFFICIAL += [("alg", "model_type", code, *OFFICIAL_ALG[code]) for code in sorted(OFFICIAL_ALG)]


@pytest.mark.parametrize("prefix,flag,code,name,implied", OFFICIAL, ids=[f"{p}:{c}" for p, _, c, _, _ in OFFICIAL])
def test_official_ids(prefix, flag, code, name, implied):
    for spelling in (f"{prefix}:{code}", f"{flag}={code}", f"--{flag} {code}"):
        variant, options = registry.resolve(spelling)
        assert variant.name == name
        assert implied.items() <= options.items()


def test_bare_ids_resolve_unless_ambiguous():
    assert fw.get(134).name == "delta_rnn"
    assert fw.get("934").name == "recurrent_delta_net"
    assert fw.get(7).name == "recurrent_delta_net"
    with pytest.raises(ValueError, match="ambiguous"):
        fw.get(2)  # LM Transformer, algorithmic Delta Net


def test_canonical_and_paper_names():
    for name, variant in fw.VARIANTS.items():
        assert fw.get(name) is variant
        assert fw.get(variant.paper_name.split(" (")[0]) is variant
    assert fw.get("RDN").name == "recurrent_delta_net"


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as error:
        fw.get("delta_gru")
    for name in fw.VARIANTS:
        assert name in str(error.value)
    assert "lm:134" in str(error.value)
    with pytest.raises(ValueError):
        fw.get("lm:999")
    with pytest.raises(TypeError):
        fw.get(1.5)


def test_every_core_has_its_function_and_forms():
    for variant in fw.VARIANTS.values():
        assert variant.family in registry.FAMILIES
        if variant.family == "baseline":
            assert variant.forms == ()
            with pytest.raises(ValueError):
                variant.fn  # noqa: B018
            continue
        assert "recurrent" in variant.forms
        assert variant.fn is getattr(fw, variant.name)
        assert variant.fn.__name__ == variant.name
        state_fields = variant.module.State._fields
        assert state_fields == variant.state
