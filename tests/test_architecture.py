"""The package's layers, as docs/architecture.md states them, checked on the code itself.

An AST walk over every module of ``scaling/``: each module imports only from the layers below
it (type-only imports under ``if TYPE_CHECKING:`` excepted), torch/MLflow/Optuna/matplotlib
only where their layer allows, no module imports another's ``_private`` name, and no public
function or class shares its name with a module. A fresh interpreter checks what importing
``scaling.laws`` and ``scaling`` really loads, and the public names stay what they are after
every submodule has been imported.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import scaling

PACKAGE = Path(scaling.__file__).parent
BASE = {"errors", "formatting", "table", "textfiles"}

# Which layers each layer may import (itself included).
ALLOWED = {
    "base": {"base"},
    "config": {"base", "config"},
    "evals": {"base", "config", "evals"},
    "training": {"base", "config", "evals", "training"},
    "laws": {"base", "laws"},
    "datasets": {"base", "datasets"},
    "sweeps": {"base", "config", "evals", "training", "sweeps"},
    "reporting": {"base", "config", "laws", "sweeps", "reporting"},
    "demo": {"base", "config", "evals", "training", "laws", "datasets", "sweeps", "reporting", "demo"},
    "cli": {"base", "config", "evals", "training", "laws", "datasets", "sweeps", "reporting", "demo",
            "cli"},
}
# Heavy libraries, and the modules (dotted, below scaling.) or layers that may import them.
HEAVY = {
    "torch": {"evals.scoring", "training", "cli"},
    "mlflow": {"sweeps.tracking"},
    "optuna": {"sweeps.queue", "sweeps.workers"},
    "matplotlib": {"reporting.figures"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(name: str) -> str:
    """Layer of a module given relative to ``scaling`` ('' is the package itself)."""
    head = name.split(".")[0]
    if head in ("", "__main__") or head in BASE:
        return "cli" if head == "__main__" else "base"
    return head


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            inside |= {id(n) for n in ast.walk(node)}
    return inside


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names) of every import that runs, at any depth of the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = _type_checking_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


def _scaling_targets(module: str, names: list[str]) -> list[str]:
    """The scaling modules an import statement reaches, relative to ``scaling``."""
    if module != "scaling" and not module.startswith("scaling."):
        return []
    base = module.removeprefix("scaling").removeprefix(".")
    targets = [f"{base}.{n}".lstrip(".") for n in names if f"{base}.{n}".lstrip(".") in MODULES]
    return targets or [base]


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for name, path in MODULES.items():
        for line, module, names in imports(path):
            for target in _scaling_targets(module, names):
                if layer(target) not in ALLOWED[layer(name)]:
                    wrong.append(f"scaling/{path.relative_to(PACKAGE)}:{line} ({layer(name)}) "
                                 f"imports scaling.{target} ({layer(target)})")
    assert wrong == []


def test_heavy_libraries_are_imported_only_where_their_layer_allows():
    wrong = []
    for name, path in MODULES.items():
        for line, module, _ in imports(path):
            top = module.split(".")[0]
            if top in HEAVY and not any(name == place or name.startswith(place + ".")
                                        or layer(name) == place for place in HEAVY[top]):
                wrong.append(f"scaling/{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert wrong == []


def test_no_module_imports_another_modules_private_name():
    wrong = []
    for path in MODULES.values():
        for line, module, names in imports(path):
            if module.startswith("scaling"):
                wrong += [f"scaling/{path.relative_to(PACKAGE)}:{line}: {module}.{n}"
                          for n in names if n.startswith("_")]
    assert wrong == []


def test_no_public_function_or_class_shares_its_name_with_a_module():
    module_names = {name.split(".")[-1] for name in MODULES if name}
    clashes = []
    for name, path in MODULES.items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in module_names:
                clashes.append(f"scaling.{name}.{node.name}")
    assert clashes == []


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_laws_import_none_of_torch_mlflow_optuna_matplotlib():
    laws = sorted(f"scaling.{name}".rstrip(".") for name in MODULES if layer(name) in ("laws", "base"))
    code = (f"import sys; [__import__(m) for m in {laws!r}]; "
            "print(sorted(m for m in ('torch', 'mlflow', 'optuna', 'matplotlib') if m in sys.modules))")
    assert _fresh(code) == "[]"


def test_every_public_name_stays_itself_after_every_submodule_is_imported():
    code = (
        "import importlib, inspect, pkgutil, scaling\n"
        "before = {n: getattr(scaling, n) for n in scaling.__all__}\n"
        "for info in pkgutil.walk_packages(scaling.__path__, 'scaling.'):\n"
        "    if not info.name.endswith('__main__'):\n"
        "        importlib.import_module(info.name)\n"
        "bad = [n for n in scaling.__all__ if getattr(scaling, n) is not before[n]\n"
        "       or inspect.ismodule(getattr(scaling, n))]\n"
        "print(bad)\n"
    )
    assert _fresh(code) == "[]"


@pytest.mark.parametrize("name", [n for n in scaling.__all__ if n != "__version__"])
def test_each_public_name_is_what_its_module_defines(name):
    for info in sorted(MODULES):
        if info and not info.endswith("__main__"):
            importlib.import_module(f"scaling.{info}")
    value = getattr(scaling, name)
    assert not inspect.ismodule(value)
    assert inspect.isclass(value) or callable(value)
    assert value.__module__.startswith("scaling")


def test_fit_is_still_a_function_after_importing_the_fitting_modules():
    """The old trap: importing the module ``scaling.fit`` replaced the function ``scaling.fit``."""
    code = (
        "import scaling, scaling.laws.fitting, scaling.laws.backtesting, scaling.laws.prediction\n"
        "import pandas as pd\n"
        "frame = pd.DataFrame({'flops_exact': [1e15, 1e16, 1e17, 1e18, 1e19],\n"
        "                      'loss': [2.0 * c ** -0.05 + 1.0 for c in (1e15, 1e16, 1e17, 1e18, 1e19)]})\n"
        "print(type(scaling.fit).__name__, type(scaling.fit('gpt4', frame, n_bootstrap=0)).__name__)\n"
    )
    assert _fresh(code) == "function FitResult"
