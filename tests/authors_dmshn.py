"""A transcription of the authors' DMSHN modules (numbered layers), used to check our import and wiring."""

import torch
import torch.nn.functional as F
from torch import nn


def res(channels):
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 3, padding=1)
    )


class AuthorsEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = nn.Conv2d(3, 32, 3, padding=1)
        self.layer2, self.layer3 = res(32), res(32)
        self.layer5 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.layer6, self.layer7 = res(64), res(64)
        self.layer9 = nn.Conv2d(64, 128, 3, stride=2, padding=1)
        self.layer10, self.layer11 = res(128), res(128)

    def forward(self, x):
        x = self.layer1(x)
        x = self.layer2(x) + x
        x = self.layer3(x) + x
        x = self.layer5(x)
        x = self.layer6(x) + x
        x = self.layer7(x) + x
        x = self.layer9(x)
        x = self.layer10(x) + x
        return self.layer11(x) + x


class AuthorsDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer13, self.layer14 = res(128), res(128)
        self.layer16 = nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1)
        self.layer17, self.layer18 = res(64), res(64)
        self.layer20 = nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)
        self.layer21, self.layer22 = res(32), res(32)
        self.layer24 = nn.Conv2d(32, 3, 3, padding=1)

    def forward(self, x):
        x = self.layer13(x) + x
        x = self.layer14(x) + x
        x = self.layer16(x)
        x = self.layer17(x) + x
        x = self.layer18(x) + x
        x = self.layer20(x)
        x = self.layer21(x) + x
        x = self.layer22(x) + x
        return self.layer24(x)


class AuthorsDMSHN(nn.Module):
    def __init__(self):
        super().__init__()
        for level in (1, 2, 3):
            setattr(self, f"encoder_lv{level}", AuthorsEncoder())
            setattr(self, f"decoder_lv{level}", AuthorsDecoder())

    def forward(self, x):
        def resize(t, factor):
            return F.interpolate(t, scale_factor=factor, mode="bilinear", align_corners=False)

        images_lv2 = resize(x, 0.5)
        images_lv3 = resize(images_lv2, 0.5)
        feature_lv3 = self.encoder_lv3(images_lv3)
        residual_lv3 = self.decoder_lv3(feature_lv3)
        feature_lv2 = self.encoder_lv2(images_lv2 + resize(residual_lv3, 2))
        residual_lv2 = self.decoder_lv2(feature_lv2 + resize(feature_lv3, 2))
        feature_lv1 = self.encoder_lv1(x + resize(residual_lv2, 2))
        return self.decoder_lv1(feature_lv1 + resize(feature_lv2, 2))


class AuthorsStackedDMSHN(nn.Module):
    def __init__(self):
        super().__init__()
        self.net1, self.net2 = AuthorsDMSHN(), AuthorsDMSHN()

    def forward(self, x):
        return self.net2(self.net1(x))


def build(stacked: bool) -> nn.Module:
    torch.manual_seed(1)
    return (AuthorsStackedDMSHN() if stacked else AuthorsDMSHN()).eval()
