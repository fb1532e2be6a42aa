"""Stacked DMSHN (MSR-Net) for one-to-one image relighting: the network, its weight file and inference."""

from model.dmshn import DMSHN, StackedDMSHN

__all__ = ["DMSHN", "StackedDMSHN"]
