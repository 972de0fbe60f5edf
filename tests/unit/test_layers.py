"""The module map holds: each module's docstring says what it may import, and says it truly;
imports only go down the layers cli -> daemon -> edges -> core; the core is pure; and the
read-only commands (`status`, `graph` from a state file) load neither docker nor etcd's
client."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "hostsyncd"

# The four layers. The daemon's layer is daemon.py and its worker, reconcile.py (the loop's
# state: what was written, races, fights), with the worker's reports.py. Edges do I/O; the
# private helpers (_etcd, _inotify, _notify) and config, log, state, problems and views sit
# beside them.
LAYERS = {"cli": 3, "__main__": 3, "daemon": 2, "reconcile": 2, "reports": 2}
CORE = 0
EDGE = 1


def _layer(module: str) -> int:
    if module == "core" or module.startswith("core."):
        return CORE
    return LAYERS.get(module, EDGE)


def _modules() -> list[str]:
    return sorted(str(p.relative_to(PACKAGE).with_suffix("")).replace("/", ".")
                  for p in PACKAGE.rglob("*.py")
                  if p.name not in ("__init__.py", "__main__.py"))


def _imports(module: str) -> tuple[set[str], set[str]]:
    """(hostsyncd modules, third-party packages) that `module` imports, anywhere in it."""
    tree = ast.parse((PACKAGE / (module.replace(".", "/") + ".py")).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "hostsyncd":  # `from hostsyncd import log`
                names |= {f"hostsyncd.{alias.name}" for alias in node.names
                          if alias.name != "__version__"}
            else:
                names.add(node.module)
    own = {name.removeprefix("hostsyncd.") for name in names if name.startswith("hostsyncd.")}
    third = {name.split(".")[0] for name in names
             if not name.startswith("hostsyncd") and name.split(".")[0]
             not in sys.stdlib_module_names}
    return own, third


def _token(own: str) -> str:
    return "core" if own.startswith("core") else own


def _declared(module: str) -> set[str]:
    doc = ast.get_docstring(ast.parse(
        (PACKAGE / (module.replace(".", "/") + ".py")).read_text())) or ""
    found = re.search(r"^Imports: ([^.]*)\.", doc, re.M)
    assert found, f"{module}: its docstring has no 'Imports: ...' line"
    return {t for t in re.split(r"[,;]\s*", found.group(1).strip()) if t != "nothing"}


@pytest.mark.parametrize("module", _modules())
def test_docstring_says_what_the_module_imports(module: str) -> None:
    own, third = _imports(module)
    assert _declared(module) == {_token(m) for m in own} | third, module


@pytest.mark.parametrize("module", _modules())
def test_imports_go_down_the_layers(module: str) -> None:
    own, third = _imports(module)
    upward = {m for m in own if _layer(m) > _layer(module)}
    assert not upward, f"{module} imports from a higher layer: {upward}"
    if _layer(module) == CORE:
        assert all(m.startswith("core") for m in own), f"{module} imports an edge"
        assert not third, f"the core is pure, but {module} imports {third}"


def test_status_and_views_load_no_engine_or_etcd_client() -> None:
    probe = ("import sys, hostsyncd.state, hostsyncd.views; "
             "print(sorted(m for m in ('docker', 'requests', 'hostsyncd.engine', "
             "'hostsyncd.cluster', 'hostsyncd._etcd') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_no_module_shadows_the_standard_library() -> None:
    shadowing = {m for m in _modules() if m.split(".")[-1] in sys.stdlib_module_names}
    assert not shadowing
