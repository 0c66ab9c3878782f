"""The experiment-preset registry (`fastweights.presets`): every preset validates without
touching the disk."""

import os
import subprocess
import sys
from pathlib import Path

from fastweights import presets

ROOT = Path(__file__).parents[1]

_VALIDATE_ALL = """
from fastweights import presets
count = 0
for task in presets.TASKS:
    for name in presets.names(task):
        presets.validate(presets.get(task, name))
        count += 1
print(count)
"""


def test_validating_every_preset_writes_nothing(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    # A fresh process, so that the data configs' cache default is read from this variable.
    env = dict(os.environ, FASTWEIGHTS_CACHE=str(cache), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _VALIDATE_ALL], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) == sum(len(p) for p in presets.PRESETS.values())
    assert list(cache.iterdir()) == []
