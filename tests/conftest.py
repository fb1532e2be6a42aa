import pytest
import torch

from model import StackedDMSHN
from model.weights import save_weights


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory):
    """The real Stacked DMSHN with seeded random weights, stored in fp16 like the shipped file."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "stacked.safetensors"
    save_weights(StackedDMSHN(), path, (-0.5, 0.5))
    return path
