"""The public API and the README agree with the registry, and the README example runs."""

import re
from pathlib import Path

import jax

import fastweights as fw

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_readme_forms_table_names_real_forms():
    section = README.split("## Forms and kernels", 1)[1].split("\n## ", 1)[0]
    for form, variants in re.findall(r"^\| `(\w+)` \| ([\w, ]+) \|", section, re.M):
        names = list(fw.VARIANTS) if variants.strip() == "all" else [v.strip() for v in variants.split(",")]
        for name in names:
            if fw.VARIANTS[name].family != "baseline":
                assert form in fw.VARIANTS[name].forms, (form, name)


def test_variant_readmes_list_the_spec_forms():
    from fastweights.ops.common.sequence import KNOWN_IMPLEMENTATIONS
    for name, variant in fw.VARIANTS.items():
        if not variant.has_core:
            continue
        text = (Path(fw.ops.__file__).parent / name / "README.md").read_text()
        block = text.split("\nForms: ", 1)[1].split("\n\n", 1)[0]
        listed = [n for n in re.findall(r"`(\w+)`", block) if n in KNOWN_IMPLEMENTATIONS]
        assert listed == list(variant.forms), name


def test_every_core_is_exported():
    for name, variant in fw.VARIANTS.items():
        if variant.family != "baseline":
            assert name in fw.__all__
            assert getattr(fw, name) is variant.fn


def test_readme_variant_table_matches_the_registry():
    section = README.split("## Variants", 1)[1].split("\n## ", 1)[0]
    rows = {m[1]: [c.strip() for c in m[2].split("|")]
            for m in re.finditer(r"^\| `(\w+)` \|(.*)\|$", section, re.M)}
    assert set(rows) == set(fw.VARIANTS)
    for name, (paper, ids, state, forms) in rows.items():
        variant = fw.VARIANTS[name]
        assert paper.startswith(variant.paper_name.split(" (")[0])
        for code in re.findall(r"(?:lm|alg):\d+", ids):
            assert fw.get(code) is variant, code
        official = {a.code for a in variant.aliases if ":" in a.code}
        assert official == set(re.findall(r"(?:lm|alg):\d+", ids))
        assert [s.strip() for s in state.split(",") if s.strip()] == list(variant.state)
        if variant.family != "baseline":
            assert [f.strip() for f in forms.split(",")] == list(variant.forms)


def test_readme_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) == 6  # the cores, the layers and models, training, LM corpus, LM evaluation, RL
    cores, layers = {}, {}
    exec(compile(blocks[0], "README.md", "exec"), cores)  # noqa: S102
    assert cores["out"].shape == (2, 16, 4, 8)
    assert cores["variant"].name == "delta_rnn"
    exec(compile(blocks[1], "README.md", "exec"), layers)  # noqa: S102
    assert layers["hidden"].shape == (2, 16, 128) and layers["sample"].shape == (2, 8)
    assert jax.numpy.isfinite(layers["loss"])
    language = {}
    exec(compile(blocks[3] + blocks[4], "README.md", "exec"), language)  # noqa: S102
    assert language["corpus"].vocab[0] == "<eos>" and language["result"]["tokens"] == \
        len(language["corpus"].splits["valid"]) - 1
    assert len(language["words"]) == 5
    rl = {}
    exec(compile(blocks[5], "README.md", "exec"), rl)  # noqa: S102
    assert rl["out"].logits.shape == (2, 3) and rl["out"].baseline.shape == (2,)
    assert rl["targets"].vs.shape == rl["targets"].pg_advantages.shape == (2, 5)
