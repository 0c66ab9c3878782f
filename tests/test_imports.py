"""The import graph, read from the source (`ast`, nothing is imported): no cycle among the
fastweights modules, and no import against the layering below. Every import counts, at
the top of a module or inside a function."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGES = ("fastweights", "experiments", "benchmarks")

TRAINING = ("fastweights.training", "fastweights.checkpoints", "fastweights.metrics")
PRESETS = ("fastweights.nn.presets", "fastweights.presets")
# (importers, imported, why): a module under an importer prefix may not import one under an
# imported prefix.
FORBIDDEN = [
    (("fastweights.ops",), ("fastweights.nn",), "the functional cores know no layers"),
    (("fastweights.ops", "fastweights.nn"), TRAINING, "cores and layers know no training"),
    (TRAINING, ("fastweights.tasks",) + PRESETS, "the loop is handed its task and model"),
    (("fastweights",), ("experiments", "benchmarks"), "the library never imports its scripts"),
    (("fastweights.ops", "fastweights.nn"), ("fastweights.lm",), "the LM tools build on the models"),
    (("fastweights.lm",), ("fastweights.training", "fastweights.checkpoints", "fastweights.tasks", "fastweights.presets"),
     "the LM tools take a model and a split; the trainer and tasks build on them"),
    (("fastweights.ops", "fastweights.nn", "fastweights.data", "fastweights.lm", "fastweights.tasks") + TRAINING
     + PRESETS, ("fastweights.rl",), "RL builds on the library; nothing below it knows RL"),
    (("fastweights.rl",), ("fastweights.tasks", "fastweights.presets", "fastweights.lm", "fastweights.data"),
     "the actor-learner loop shares the training pieces, not the supervised tasks"),
]
# No task imports another: what they share lives in these modules.
TASKS, TASKS_SHARED = "fastweights.tasks", ("fastweights.tasks.materialised",)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _under(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _known(name: str) -> str | None:
    """The project module `name` names, or the package it is an attribute of."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> set[str]:
    """The project modules `module` imports (the most specific module each statement names)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:          # relative: from the package, `level - 1` packages up
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from a import b` imports the module a.b when there is one, else names in a.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                     for alias in node.names]
        else:
            continue
        out |= {found for name in names if (found := _known(name)) and found != module}
    return out


GRAPH = {module: imports(module) for module in MODULES}


def test_the_walk_sees_the_imports():
    assert "fastweights.training.loop" in GRAPH["fastweights.training"]
    assert "fastweights.training.config" in GRAPH["fastweights.training.optim"]
    assert "fastweights.tasks.materialised" in GRAPH["fastweights.tasks.listops"]


def test_no_import_cycle():
    """Depth-first search; a back edge is a cycle, reported as the modules around it."""
    fastweights = {m for m in GRAPH if _under(m, ("fastweights",))}
    state: dict[str, str] = {}
    stack: list[str] = []
    cycles = []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in sorted(GRAPH[module] & fastweights):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(fastweights):
        if module not in state:
            visit(module)
    if cycles:
        pytest.fail("import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles))


def test_imports_run_one_way():
    wrong = [f"{module} imports {target} ({why})"
             for importers, imported, why in FORBIDDEN
             for module, targets in GRAPH.items() if _under(module, importers)
             for target in sorted(targets) if _under(target, imported)]
    tasks = [m for m in GRAPH if m.startswith(TASKS + ".") and m not in TASKS_SHARED]
    wrong += [f"{module} imports {target} (no task imports another)"
              for module in tasks for target in sorted(GRAPH[module]) if target in tasks]
    if wrong:
        pytest.fail("imports against the layering:\n" + "\n".join(wrong))
