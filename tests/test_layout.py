"""The tree shows the architecture: imports go one way, no module reaches into another's private
names, no module is over 400 lines.

Floors, bottom up: ``theory`` and ``cli`` (import nothing of ours) -> ``analysis`` -> ``simulate`` and
``nets`` -> ``paper_figures``. Inside ``nets``: ``config``, ``presets``, ``options``, ``models``, ``data`` ->
``monitor`` (and ``plots``) -> ``training`` -> the commands. Every import is read from the source with
:mod:`ast`, including those inside functions.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("theory", "cli", "analysis", "simulate", "nets", "paper_figures")

#: what each package (or part of nets) may import from the toolkit, besides itself
ALLOWED = {
    "theory": set(),
    "cli": set(),
    "analysis": {"theory"},
    "simulate": {"theory", "analysis", "cli"},
    "nets.base": {"theory", "analysis", "cli", "nets.base"},
    "nets.plots": {"theory", "analysis", "cli", "nets.base"},
    "nets.monitor": {"theory", "analysis", "cli", "nets.base", "nets.plots", "nets.monitor"},
    "nets.training": {"theory", "analysis", "cli", "nets.base", "nets.plots", "nets.monitor", "nets.training"},
    "nets.commands": {"theory", "analysis", "cli", "nets.base", "nets.plots", "nets.monitor", "nets.training",
                      "nets.commands"},
}
NETS_BASE = {"nets", "nets.config", "nets.presets", "nets.options", "nets.models", "nets.data"}
NETS_COMMANDS = {"nets.train", "nets.sweep", "nets.regimes", "nets.paper_check"}
ALLOWED["paper_figures"] = set().union(*ALLOWED.values()) | {"simulate"}


def _floor(module: str) -> str:
    """The floor of a dotted module name (``nets.monitor.si`` -> ``nets.monitor``)."""
    top = module.split(".")[0]
    if top != "nets":
        return top
    parts = module.split(".")
    two = ".".join(parts[:2])
    if two in ("nets.monitor", "nets.training", "nets.plots"):
        return two
    if two in NETS_COMMANDS:
        return "nets.commands"
    if two in NETS_BASE or module == "nets":
        return "nets.base"
    raise AssertionError(f"{module}: no floor assigned (add it to tests/test_layout.py)")


def _modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def _imports(path: Path, module: str):
    """(imported module, imported names) of every import statement in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            yield base, [a.name for a in node.names]


MODULES = list(_modules())
TEST_HELPERS = {p.stem for p in (ROOT / "tests").glob("*.py")}
TEST_MODULES = [(f"tests.{p.stem}", p) for p in sorted((ROOT / "tests").glob("*.py"))]


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_go_one_way(module, path):
    floor = _floor(module)
    for target, _ in _imports(path, module):
        if target.split(".")[0] not in PACKAGES:
            continue
        assert _floor(target) in ALLOWED[floor] | {floor}, f"{module} ({floor}) imports {target}"


@pytest.mark.parametrize("module,path", MODULES + TEST_MODULES, ids=[m for m, _ in MODULES + TEST_MODULES])
def test_no_private_name_is_imported_from_another_module(module, path):
    for target, names in _imports(path, module):
        if target.split(".")[0] in PACKAGES or target in TEST_HELPERS:
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{module} imports {private} from {target}"


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in list(ROOT.glob("*/**/*.py"))
            if ".git" not in p.parts and (n := len(p.read_text().splitlines())) > 400}
    assert not long


def test_the_layout_test_can_fail():
    """The floor rule rejects an upward import (the check above is not vacuous)."""
    assert _floor("nets.training.run") not in ALLOWED["nets.monitor"]
    assert _floor("simulate.engine") not in ALLOWED["analysis"]
    assert _floor("nets.train") == "nets.commands" and _floor("nets.data.pack") == "nets.base"
    imports = list(_imports(ROOT / "nets" / "monitor" / "simonitor.py", "nets.monitor.simonitor"))
    assert ("analysis.online", ["StreamingPeriodDetector"]) in imports
