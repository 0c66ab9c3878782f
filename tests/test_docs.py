"""Documentation that cannot go stale: every docstring example (`>>>`) in the package and every
Python block of the READMEs runs."""

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import fastweights

ROOT = Path(__file__).parents[1]
READMES = [ROOT / "README.md", *sorted((ROOT / "fastweights").rglob("README.md"))]


def _modules():
    for info in pkgutil.walk_packages(fastweights.__path__, "fastweights."):
        if not info.name.endswith("__main__"):  # running it is the CLI
            yield info.name


def _examples():
    finder = doctest.DocTestFinder()
    for name in _modules():
        for test in finder.find(importlib.import_module(name)):
            if test.examples and test.name.startswith(name):  # defined here, not imported
                yield test


EXAMPLES = {test.name: test for test in _examples()}


def test_the_documented_examples_exist():
    # The README points readers to these modules' examples.
    documented = {"fastweights.training", "fastweights.presets", "fastweights.experiment", "fastweights.registry",
                  "fastweights.ops.common.spec"}
    assert documented <= set(EXAMPLES), sorted(documented - set(EXAMPLES))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_docstring_example_runs(name):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    result = runner.run(EXAMPLES[name], out=lambda text: print(text, end=""))
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed (output above)"


@pytest.mark.parametrize("path", READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_readme_python_blocks_run(path):
    """The blocks of one README run in order in one namespace, as a reader would paste them."""
    namespace: dict = {}
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), re.S)):
        exec(compile(block, f"{path.name} block {i}", "exec"), namespace)  # noqa: S102
