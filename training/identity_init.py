"""Start training from the identity map: an untrained (Stacked) DMSHN that returns its input exactly.

The network has no normalisation and no global residual. From PyTorch's default init its
output is close to a constant (the variance shrinks about threefold per plain convolution,
twelve of them in the stacked network), and on our CPU budget training sat for hundreds of
steps predicting the mean image. This init changes no layer, only the starting weights:

- residual blocks start as the identity (last conv zero, as timm's zero_init_last);
- level 1 of each DMSHN is a lossless space-to-depth / depth-to-space pair: the stride-2
  encoder convolutions copy each 2x2 block into channels (3 -> 12 -> 48), the transposed
  decoder convolutions put them back, and the 3x3 convs at either end copy the image;
- levels 2 and 3 start silent (their encoders' last stride-2 conv is zero), so the coarse
  residuals and features added into level 1 are zero.

So DMSHN(x) = x and StackedDMSHN(x) = x before the first step, and training learns the
relighting as a change from the input. Weights loaded from a file replace all of it.
"""

import torch
from torch import nn

from model.dmshn import DMSHN, Decoder, Encoder, ResBlock, StackedDMSHN
from model.pixels import ValueRange
from training.baselines import ColourTransfer


@torch.no_grad()
def copy_channels_(conv: nn.Conv2d, channels: int) -> None:
    conv.weight.zero_()
    conv.bias.zero_()
    for c in range(channels):
        conv.weight[c, c, 1, 1] = 1.0


@torch.no_grad()
def block_copy_(layer: nn.Conv2d | nn.ConvTranspose2d, channels: int) -> None:
    """Weight [4c + 2dy + dx, c, 1 + dy, 1 + dx] = 1 for the first `channels` channels, all else 0.

    In a stride-2 3x3 Conv2d (padding 1; weight is out x in) this is space-to-depth: output
    channel 4c + 2dy + dx at (i, j) is input channel c at (2i + dy, 2j + dx). In a stride-2 4x4
    ConvTranspose2d (padding 1; weight is in x out) the same entries are its inverse,
    depth-to-space: input channel 4c + 2dy + dx at (i, j) goes back to channel c at (2i + dy, 2j + dx).
    """
    layer.weight.zero_()
    layer.bias.zero_()
    for c in range(channels):
        for dy in (0, 1):
            for dx in (0, 1):
                layer.weight[4 * c + 2 * dy + dx, c, 1 + dy, 1 + dx] = 1.0


@torch.no_grad()
def residual_identity_(block: ResBlock) -> None:
    nn.init.kaiming_normal_(block.body[0].weight, nonlinearity="relu")
    block.body[0].bias.zero_()
    block.body[2].weight.zero_()
    block.body[2].bias.zero_()


def encoder_identity_(encoder: Encoder, silent: bool) -> None:
    copy_channels_(encoder.scale1[0], 3)
    block_copy_(encoder.scale2[0], 3)
    block_copy_(encoder.scale3[0], 12)
    if silent:
        encoder.scale3[0].weight.data.zero_()


def decoder_identity_(decoder: Decoder) -> None:
    block_copy_(decoder.scale3[2], 12)
    block_copy_(decoder.scale2[2], 3)
    copy_channels_(decoder.scale1[2], 3)


def identity_init_(model: DMSHN | StackedDMSHN) -> None:
    for block in model.modules():
        if isinstance(block, ResBlock):
            residual_identity_(block)
    for dmshn in dmshns(model):
        for level in (1, 2, 3):
            encoder_identity_(getattr(dmshn, f"encoder_lv{level}"), silent=level > 1)
            decoder_identity_(getattr(dmshn, f"decoder_lv{level}"))


def dmshns(model: DMSHN | StackedDMSHN) -> tuple[DMSHN, ...]:
    return (model.net1, model.net2) if isinstance(model, StackedDMSHN) else (model,)


@torch.no_grad()
def colour_init_(model: DMSHN | StackedDMSHN, colour: ColourTransfer, value_range: ValueRange) -> None:
    """After identity_init_: make the last convolution apply the fitted global colour transfer.

    The untrained network then equals the colour baseline (fitted on the train split), and
    training spends its steps on what a global colour change cannot do: shading and shadows.
    Adam moves each weight by about lr per step, so learning a 3x3 colour matrix from the
    identity alone takes most of a CPU run. The transfer is y = x M + b on [0, 1] pixels;
    in the network's range [low, high] that is y' = x' M + low (1 - column sums of M) + span b.
    training.train passes a fit without the offset b (black stays black): fitted with it on the
    v1/v2 sets, b lifts a black input to 39-65/255, a haze the network would have to unlearn.
    """
    low, high = value_range
    matrix = torch.as_tensor(colour.matrix, dtype=torch.float32)
    bias = low * (1 - matrix.sum(0)) + (high - low) * torch.as_tensor(colour.bias, dtype=torch.float32)
    last = dmshns(model)[-1].decoder_lv1.scale1[2]
    last.weight[:3, :3, 1, 1] = matrix.T
    last.bias.copy_(bias)
