"""Networks used in the course.

`LeNetsPP` is the 2-D feature network of Wen et al., "A Discriminative Feature
Learning Approach for Deep Face Recognition" (ECCV 2016), used on MNIST / W-MNIST so
that the learned features can be plotted directly.

`ResNet18` is the network of the paper's facial-expression experiments (RAF-DB from
ImageNet weights, AffectNet from scratch): torchvision's ResNet-18 whose 512-D
global-average-pooled vector is the feature the center / DDA losses act on.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision.models import ResNet, ResNet18_Weights, resnet18

__all__ = ["LeNetsPP", "PretrainedWeightsUnavailableError", "ResNet18", "resnet18_weights_path"]


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


class PretrainedWeightsUnavailableError(RuntimeError):
    """ImageNet weights could not be downloaded or loaded; the message says where to put them.

    ``path`` is the file torchvision reads, ``url`` where to fetch it from.
    """

    def __init__(self, message: str, path: Path, url: str) -> None:
        super().__init__(message)
        self.path, self.url = path, url


def resnet18_weights_path() -> Path:
    """The file torchvision reads ResNet-18's ImageNet weights from (downloading it if absent).

    ``torch.hub.get_dir()/checkpoints/<file name of ResNet18_Weights.IMAGENET1K_V1.url>``,
    i.e. ``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth`` (``$TORCH_HOME`` defaults to
    ``~/.cache/torch``). Evaluated at call time, so it follows ``TORCH_HOME`` and
    ``torch.hub.set_dir``.
    """
    url = ResNet18_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def _imagenet_resnet18() -> ResNet:
    """torchvision's ResNet-18 with ``IMAGENET1K_V1`` weights, or a clear error offline.

    torchvision passes ``check_hash=True``, but ``torch.hub.load_state_dict_from_url``
    verifies the SHA-256 prefix in the file name only while downloading: a file already at
    :func:`resnet18_weights_path` (e.g. copied there by hand) is loaded as is.
    """
    weights = ResNet18_Weights.IMAGENET1K_V1
    path = resnet18_weights_path()
    was_present = path.is_file()
    try:
        return resnet18(weights=weights)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        # OSError covers urllib's URLError / HTTPError and socket timeouts of the download;
        # RuntimeError a hash mismatch of the download or a file with the wrong tensors.
        if was_present:
            what = (
                f"loading the ImageNet weights from {path} failed ({type(err).__name__}: "
                f"{err}). The file is not torchvision's ResNet-18 checkpoint or is damaged: "
                f"delete it and fetch {weights.url} again"
            )
        else:
            what = (
                f"downloading the ImageNet weights failed ({type(err).__name__}: {err}). "
                f"Without internet, fetch {weights.url} on a machine that has it and place "
                f"the file at {path} (torch.hub.get_dir()/checkpoints; set TORCH_HOME to "
                "use another folder)"
            )
        raise PretrainedWeightsUnavailableError(
            f"ResNet18(weights='imagenet'): {what}. Or pass weights=None to train from "
            "scratch (random initialisation).",
            path=path,
            url=weights.url,
        ) from err


class ResNet18(nn.Module):
    """ResNet-18 (He et al., 2016) with a 512-D feature layer and a linear classifier.

    Shapes: input (B, 3, H, W), float, normalised (e.g. 90x90 RAF-DB or 224x224 AffectNet
    crops; any H, W >= 32 works) -> torchvision's ResNet-18 trunk -> (B, 512, H/32, W/32)
    (rounded up: 3x3 for 90x90, 7x7 for 224x224) -> global average pool -> features
    (B, 512) -> linear layer with bias -> logits (B, K).

    Attributes:
        backbone: torchvision's ``ResNet`` with ``fc`` replaced by ``nn.Identity``, so that
            ``backbone(x)`` is the pooled feature vector.
        classifier: ``nn.Linear(512, num_classes)``, PyTorch's default initialisation.
        num_classes: K. feat_dim: D = 512.

    Args:
        num_classes: K, number of expression classes (7 for RAF-DB basic emotions).
        weights: ``"imagenet"`` loads torchvision's ``ResNet18_Weights.IMAGENET1K_V1``
            (the paper's RAF-DB setup; the 1000-class ImageNet head is dropped), ``None``
            initialises at random (the paper's AffectNet setup). The weights come from
            torch hub's cache, :func:`resnet18_weights_path`, downloaded there if absent.

    Raises:
        ValueError: ``num_classes`` not a positive int, or ``weights`` not None / "imagenet".
        PretrainedWeightsUnavailableError: ``weights="imagenet"`` and the file can be
            neither downloaded nor loaded; the message gives the path, the URL and the
            ``weights=None`` alternative.
    """

    def __init__(self, num_classes: int = 7, weights: str | None = None) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"ResNet18: num_classes must be an int >= 1, got {num_classes!r}")
        if weights is not None and weights != "imagenet":
            raise ValueError(
                f"ResNet18: weights must be 'imagenet' (torchvision's IMAGENET1K_V1) or None "
                f"(random initialisation), got {weights!r}"
            )
        self.num_classes = num_classes
        self.feat_dim = 512
        self.weights = weights
        backbone = resnet18(weights=None) if weights is None else _imagenet_resnet18()
        backbone.fc = nn.Identity()  # drop the 1000-class head: backbone(x) is (B, 512)
        self.backbone = backbone
        self.classifier = nn.Linear(self.feat_dim, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map images (B, 3, H, W) to `(features (B, 512), logits (B, K))`."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"ResNet18.forward: expected images of shape (B, 3, H, W), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(
                f"ResNet18.forward: expected float images, got {x.dtype}; convert uint8 "
                "batches with ferlib.data.normalize"
            )
        features = self.backbone(x)  # conv trunk + global average pool + flatten
        return features, self.classifier(features)
