"""The house's rules (docs/DESIGN.md 6), checked on the source: every import runs downhill, at module level and
inside functions (so there is no circle at import time or at run time); no project module is imported by a string;
no module is over 450 lines; ``import attn_core`` is cheap and exposes the public face; the app imports only
package-level faces of the library."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 450

# Floor of each part: a module may import only from its own part or from lower floors. Parts on the same floor
# (zoo and faces, eval and batch) do not import each other.
FLOORS = {
    "attn_core.paths": 1, "attn_core.digests": 1,
    "attn_core.zoo": 2, "attn_core.faces": 2,
    "attn_core.scoring": 3,
    "attn_core.viz": 4,
    "attn_core.lab": 4.2,
    "attn_core": 4.5,  # the public face (attn_core/__init__.py)
    "attn_core.eval": 5, "attn_core.batch": 5,
    "attn_core.train": 6,
    "attn_core.cli": 7,
    "attn_core.__main__": 8,
    "app": 9,
}


def _part(module: str) -> str:
    """The part (a key of FLOORS) a dotted module name belongs to."""
    parts = module.split(".")
    for length in (2, 1):
        candidate = ".".join(parts[:length])
        if candidate in FLOORS:
            return candidate
    raise KeyError(module)


def _module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def _sources() -> list[Path]:
    return sorted(p for folder in ("attn_core", "app") for p in (ROOT / folder).rglob("*.py"))


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names) of every import statement in the file, anywhere in it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


def _project(module: str) -> bool:
    return module == "attn_core" or module.startswith(("attn_core.", "app.")) or module == "app"


def test_every_import_runs_downhill():
    wrong = []
    for path in _sources():
        importer = _module_name(path)
        source_part = _part(importer)
        for line, module, names in _imports(path):
            if not _project(module):
                continue
            targets = [module]
            if module in ("attn_core", "app"):  # `from attn_core import faces`: the named sub-package is the target
                targets = [f"{module}.{name}" if f"{module}.{name}" in FLOORS or _is_package(module, name) else module
                           for name in names] or [module]
            for target in targets:
                target_part = _part(target)
                if target_part == source_part:
                    continue
                if FLOORS[target_part] >= FLOORS[source_part]:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} ({source_part}, floor {FLOORS[source_part]}) "
                                 f"imports {target} ({target_part}, floor {FLOORS[target_part]})")
    assert not wrong, "imports that run uphill or sideways:\n" + "\n".join(wrong)


def _is_package(module: str, name: str) -> bool:
    base = ROOT.joinpath(*module.split("."), name)
    return base.is_dir() or base.with_suffix(".py").is_file()


def test_no_project_module_is_imported_by_a_string():
    """``import_module`` / ``__import__`` only of third-party names: a literal, or a variable in a function whose
    string literals name no project module (hub.py walks a fixed tuple of HTTP client names)."""
    wrong = []
    for path in _sources():
        tree = ast.parse(path.read_text())
        scopes = [[s for s in tree.body if not isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]]
        scopes += [n.body for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for body in scopes:
            calls = [n for statement in body for n in ast.walk(statement) if isinstance(n, ast.Call)]
            literals = {n.value for statement in body for n in ast.walk(statement)
                        if isinstance(n, ast.Constant) and isinstance(n.value, str)}
            for call in calls:
                name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
                if name not in ("import_module", "__import__") or not call.args:
                    continue
                argument = call.args[0]
                third_party = (not _project(argument.value) if isinstance(argument, ast.Constant)
                               else isinstance(argument, ast.Name) and not any(map(_project, literals)))
                if not third_party:
                    wrong.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert not wrong, "project modules imported by string: " + ", ".join(sorted(set(wrong)))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_450_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (limit {MAX_LINES}): split it by job"


def test_app_imports_only_package_faces_of_the_library():
    faces = {"attn_core", "attn_core.eval", "attn_core.faces", "attn_core.scoring", "attn_core.viz", "attn_core.zoo",
             "attn_core.lab", "attn_core.paths", "attn_core.digests"}
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {module}"
             for path in _sources() if _module_name(path).startswith("app")
             for line, module, _ in _imports(path) if module.startswith("attn_core") and module not in faces]
    assert not wrong, "\n".join(wrong)


def test_import_attn_core_is_cheap_and_exposes_the_public_face():
    code = ("import sys, attn_core; heavy = [m for m in ('torch', 'cv2', 'matplotlib', 'gradio') if m in sys.modules]; "
            "print(heavy); print(sorted(attn_core.__all__)); "
            "print(attn_core.create_model.__module__, attn_core.FaceQualityModel.from_module.__qualname__)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy, names, where = run.stdout.splitlines()
    assert heavy == "[]"
    assert names == str(sorted(["AttentionCapture", "FaceQualityModel", "QualityResult", "ScoreOptions", "create_model",
                                "degrade", "extract_faces", "list_backbones", "show_map_on_image"]))
    assert where == "attn_core.scoring.model FaceQualityModel.from_module"


def test_importing_the_library_changes_no_global_state():
    code = ("import matplotlib, torch; backend = matplotlib.get_backend(); torch.manual_seed(123); "
            "expected = torch.rand(1).item(); torch.manual_seed(123); "
            "import attn_core.viz, attn_core.eval, attn_core.scoring; from attn_core.zoo import load_backbone; "
            "load_backbone('test-face-vit-p8', random_init=True, device='cpu'); "
            "print(matplotlib.get_backend() == backend, torch.rand(1).item() == expected)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, MPLBACKEND="svg"))
    assert run.stdout.split() == ["True", "True"]
