"""Stacked DMSHN (MSR-Net) for one-to-one image relighting: network, weights, data, training."""

from model.dmshn import DMSHN, StackedDMSHN

__all__ = ["DMSHN", "StackedDMSHN"]
