"""Stacked DMSHN (MSR-Net) for one-to-one image relighting: the network, its weight file and inference.

`from model import StackedDMSHN` loads torch; importing a torch-free module of the package (model.shapes,
model.tiling) does not, so the service's queue can plan tiles without it.
"""

__all__ = ["DMSHN", "StackedDMSHN"]


def __getattr__(name: str):
    if name in __all__:
        from model import dmshn

        return getattr(dmshn, name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
