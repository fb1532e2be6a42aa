"""The three rooms: serving stands on model/ and never loads training/; model/ loads neither."""

import json
import subprocess
import sys

import pytest


def modules_loaded_by(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.parametrize("statement", ["import service.http.app", "import service.serve"])
def test_service_loads_no_training_module(statement):
    loaded = modules_loaded_by(statement)
    assert "service.http.app" in loaded
    assert not {name for name in loaded if name == "training" or name.startswith("training.")}


def test_model_loads_neither_service_nor_training():
    loaded = modules_loaded_by("import model.dmshn, model.weights, model.inference, model.convert, model.info")
    assert not {name for name in loaded if name.split(".")[0] in {"service", "training"}}
