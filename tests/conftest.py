import os

import pytest
import torch

from model import StackedDMSHN
from model.weights import save_weights
from service.settings import Settings

# The service's settings as the shell exports them (an API key, a device, a queue size) would reach every server
# the tests start and every Settings() they build: the tests set what they need and start from the defaults.
SHELL_SETTINGS = sorted(name for name in os.environ if name.startswith("RELIGHT_")
                        and name.removeprefix("RELIGHT_").lower() in Settings.model_fields)  # fmt: skip
for name in SHELL_SETTINGS:
    del os.environ[name]


def pytest_report_header() -> str | None:
    return (
        f"ignoring the shell's {', '.join(SHELL_SETTINGS)}: the tests start from the defaults"
        if SHELL_SETTINGS
        else None
    )


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory):
    """The real Stacked DMSHN with seeded random weights, stored in fp16 like the shipped file."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "stacked.safetensors"
    save_weights(StackedDMSHN(), path, (-0.5, 0.5))
    return path
