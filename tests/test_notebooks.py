"""The notebooks: each `notebooks/NN_name.py` (jupytext py:percent) runs end to end with
QUICK = True, its install cell skipped; it opens with a Colab badge on its own `.ipynb` on the
repository's main branch, an install cell pinned to this version and tagged
`skip-execution`, and a parameters cell `QUICK = False`; its paired `.ipynb` has the same
cells."""

import configparser
import re
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")

ROOT = Path(__file__).parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
METADATA = configparser.ConfigParser()
METADATA.read(ROOT / "setup.cfg")
URL, VERSION = METADATA["metadata"]["url"], METADATA["metadata"]["version"]
REPOSITORY = re.fullmatch(r"https://github\.com/([^/]+/[^/]+)", URL).group(1)


def _tags(cell) -> list:
    return cell.get("metadata", {}).get("tags", [])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    monkeypatch.chdir(ROOT)
    namespace = {"__name__": "__main__"}
    for cell in jupytext.read(path).cells:
        if cell.cell_type != "code" or "skip-execution" in _tags(cell):
            continue
        source = cell.source
        if "parameters" in _tags(cell):
            source = source.replace("QUICK = False", "QUICK = True", 1)
        exec(compile(source, str(path), "exec"), namespace)  # noqa: S102
    assert namespace["QUICK"] is True


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_opens_with_badge_install_and_parameters(path):
    cells = jupytext.read(path).cells
    badge = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{path.stem}.ipynb"
    assert cells[0].cell_type == "markdown" and badge in cells[0].source, "the first cell's Colab badge"
    install = cells[1]
    assert install.cell_type == "code" and "skip-execution" in _tags(install)
    assert f"git+{URL}@v{VERSION}" in install.source, "the install cell pins this version's tag"
    parameters = cells[2]
    assert "parameters" in _tags(parameters) and "QUICK = False" in parameters.source
    paired = path.with_suffix(".ipynb")
    assert paired.exists(), f"{paired.name} is missing: python notebooks/_build.py {path.stem}"
    ipynb = jupytext.read(paired).cells
    assert [(c.cell_type, c.source) for c in ipynb] == [(c.cell_type, c.source) for c in cells], \
        f"{paired.name} differs from {path.name}: python notebooks/_build.py {path.stem}"
