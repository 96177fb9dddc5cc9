"""Networks used in the course.

`LeNetsPP` is the 2-D feature network of Wen et al., "A Discriminative Feature
Learning Approach for Deep Face Recognition" (ECCV 2016), used on MNIST / W-MNIST so
that the learned features can be plotted directly.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

__all__ = ["LeNetsPP"]


def _conv_stage(in_ch: int, out_ch: int, pool_kernel: int) -> list[nn.Module]:
    """[Conv 5x5 pad 2 -> PReLU] x 2, then max-pool (stride 2)."""
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size=5, padding=2),
        nn.PReLU(out_ch, init=0.25),
        nn.Conv2d(out_ch, out_ch, kernel_size=5, padding=2),
        nn.PReLU(out_ch, init=0.25),
        nn.MaxPool2d(kernel_size=pool_kernel, stride=2),
    ]


def _caffe_xavier_(layer: nn.Conv2d | nn.Linear) -> None:
    """Caffe's "xavier" filler: weights ~ U(-a, a) with a = sqrt(3 / fan_in), zero bias.

    Variance 1 / fan_in, as Caffe computes it; `torch.nn.init.xavier_uniform_` instead
    uses 2 / (fan_in + fan_out), which starts LeNets++ with ~4x smaller 2-D features.
    """
    bound = math.sqrt(3.0 / layer.weight[0].numel())  # fan_in = in_channels * kh * kw
    nn.init.uniform_(layer.weight, -bound, bound)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class LeNetsPP(nn.Module):
    """LeNets++: six 5x5 convolutions, a `feat_dim`-D feature layer and a bias-free classifier.

    Shapes: input (B, 1, 28, 28) -> conv stages 32, 64, 128 channels with pools 2/2, 2/2,
    3/2 -> (B, 128, 3, 3) -> flatten (B, 1152) -> FC + PReLU -> features (B, D) ->
    FC without bias -> logits (B, K). 797,624 parameters for K=10, D=2.

    Args:
        num_classes: K, number of output classes.
        feat_dim: D, dimension of the feature layer (2 for plotting).
        init: "xavier" (Caffe's xavier filler, as in Wen et al.'s Caffe model: uniform
            weights of variance 1 / fan_in and zero biases for every conv / linear layer)
            or "default" (PyTorch's default init). Measured on MNIST over 12 seeds, the
            median 2-D feature norm starts at ~0.2 (0.03-1) with "xavier" and ~0.01
            (0.004-0.03) with "default". Pitfall of "default": with features that small,
            center-loss updates drag all centers to the origin.
    """

    def __init__(self, num_classes: int = 10, feat_dim: int = 2, init: str = "xavier") -> None:
        super().__init__()
        if init not in ("xavier", "default"):
            raise ValueError(f"LeNetsPP: init must be 'xavier' or 'default', got {init!r}")
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.features = nn.Sequential(
            *_conv_stage(1, 32, pool_kernel=2),  # (B, 32, 14, 14)
            *_conv_stage(32, 64, pool_kernel=2),  # (B, 64, 7, 7)
            *_conv_stage(64, 128, pool_kernel=3),  # (B, 128, 3, 3)
            nn.Flatten(),  # (B, 1152)
            nn.Linear(128 * 3 * 3, feat_dim),
            nn.PReLU(feat_dim, init=0.25),
        )
        self.classifier = nn.Linear(feat_dim, num_classes, bias=False)
        if init == "xavier":
            for m in self.modules():
                if isinstance(m, nn.Conv2d | nn.Linear):
                    _caffe_xavier_(m)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map images (B, 1, 28, 28) to `(features (B, D), logits (B, K))`."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(
                f"LeNetsPP.forward: expected images of shape (B, 1, 28, 28), got {tuple(x.shape)}"
            )
        features = self.features(x)
        return features, self.classifier(features)
