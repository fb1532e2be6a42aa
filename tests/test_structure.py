"""The three rooms: serving stands on model/ and never loads training/; model/ loads neither; no import cycles.

Two views: what `import X` loads at run time (a subprocess), and every import statement in the source, at
module level or inside a function (read with ast), so a lazy import that would close a cycle is caught too.
"""

import ast
import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.batching.handle import ModelHandle

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("model", "service", "training")


def modules_loaded_by(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout.splitlines()[-1]))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imported_by(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that `name`'s import statements name, wherever they are in the file.

    `from a.b import c` counts as importing a.b.c where that is a module, else a.b; relative imports are
    resolved against the module's package. Modules outside model/, service/ and training/ are left out.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    modules = source_modules()
    return {name: imported_by(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("statement", ["import service.http.app", "import service.serve"])
def test_service_loads_no_training_module(statement):
    loaded = modules_loaded_by(statement)
    assert "service.http.app" in loaded
    assert not {name for name in loaded if name == "training" or name.startswith("training.")}


def test_model_loads_neither_service_nor_training():
    loaded = modules_loaded_by("import model.dmshn, model.weights, model.inference, model.convert, model.info")
    assert not {name for name in loaded if name.split(".")[0] in {"service", "training"}}


@pytest.mark.fast
def test_rooms_import_only_what_they_stand_on():
    """In the source, lazy imports included: service and training import model (and themselves), never each
    other; model imports neither."""
    allowed = {"model": {"model"}, "service": {"model", "service"}, "training": {"model", "training"}}
    crossing = [
        f"{name} imports {target}"
        for name, targets in import_graph().items()
        for target in targets
        if target.split(".")[0] not in allowed[name.split(".")[0]]
    ]
    assert not crossing


@pytest.mark.fast
def test_no_import_cycle():
    """No module of model/, service/ or training/ imports, however indirectly, a module that imports it,
    counting imports inside functions too (a lazy import hides a cycle; it does not remove it)."""
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(component) for component in found)


@pytest.mark.fast
def test_the_graph_sees_imports_inside_functions():
    """The check above would pass vacuously if the graph missed lazy imports: the --ray path's is one."""
    graph = import_graph()
    assert "service.command.ray_job" in graph["service.command.main"]
    assert "service.command.local" in graph["service.command.ray_job"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.fast
def test_the_queue_does_not_stand_on_the_device():
    """The batcher (the queue's policy) imports neither the engine nor torch: a fake run_batch is all it needs."""
    modules = source_modules()
    direct = imported_by("service.batching.batcher", modules["service.batching.batcher"], modules)
    tree = ast.parse(modules["service.batching.batcher"].read_text(encoding="utf-8"))
    third_party = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                   for alias in node.names}  # fmt: skip
    third_party |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "service.inference.engine" not in direct
    assert "torch" not in third_party


def test_loading_the_queue_loads_no_torch():
    """Nor indirectly: the tiles it plans come from model.tiling and model.shapes, which stand on numpy alone."""
    loaded = modules_loaded_by("import service.batching.batcher")
    assert "service.batching.batcher" in loaded and "torch" not in loaded


@pytest.mark.fast
@pytest.mark.parametrize(
    "handle", ["service.inference.local_model.LocalModel", "service.workers.remote_model.RemoteModel"]
)
def test_each_model_handle_has_the_written_interface(handle):
    """LocalModel (one process) and RemoteModel (HTTP workers) both have every ModelHandle method, with its
    parameters and its sync or async kind, so the routes can hold either."""
    module, _, name = handle.rpartition(".")
    implementation = getattr(importlib.import_module(module), name)
    for member, written in inspect.getmembers(ModelHandle, inspect.isfunction):
        if member.startswith("_"):
            continue
        implemented = getattr(implementation, member)
        assert list(inspect.signature(implemented).parameters) == list(inspect.signature(written).parameters), member
        assert inspect.iscoroutinefunction(implemented) == inspect.iscoroutinefunction(written), member
