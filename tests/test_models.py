import pytest
import torch
from torch import nn

from ferlib.data import MNIST_MEAN, MNIST_STD
from ferlib.models import LeNetsPP


def test_parameter_count() -> None:
    assert sum(p.numel() for p in LeNetsPP().parameters()) == 797_624


def test_output_shapes() -> None:
    model = LeNetsPP(num_classes=7, feat_dim=3)
    features, logits = model(torch.randn(5, 1, 28, 28))
    assert features.shape == (5, 3)
    assert logits.shape == (5, 7)
    assert (model.num_classes, model.feat_dim) == (7, 3)
    features, logits = LeNetsPP()(torch.randn(4, 1, 28, 28))
    assert features.shape == (4, 2) and logits.shape == (4, 10)


def test_architecture_details() -> None:
    model = LeNetsPP()
    assert model.classifier.bias is None
    prelus = [m for m in model.modules() if isinstance(m, nn.PReLU)]
    assert [p.num_parameters for p in prelus] == [32, 32, 64, 64, 128, 128, 2]
    assert all(torch.all(p.weight == 0.25) for p in prelus)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    assert all(c.kernel_size == (5, 5) and c.padding == (2, 2) for c in convs)


def test_xavier_init_is_caffe_xavier() -> None:
    """Caffe's xavier filler: U(-a, a), a = sqrt(3 / fan_in), i.e. std 1 / sqrt(fan_in)."""
    torch.manual_seed(0)
    for m in LeNetsPP(init="xavier").modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            fan_in = m.weight[0].numel()
            assert m.weight.abs().max() <= (3 / fan_in) ** 0.5
            assert m.weight.std().item() == pytest.approx(fan_in**-0.5, rel=0.25)
            assert m.bias is None or torch.all(m.bias == 0)


def _median_feature_norm(init: str) -> float:
    """Median 2-D feature norm over 5 seeds on MNIST-like input (sparse bright strokes)."""
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(64, 1, 28, 28, generator=gen) > 0.8).float()
    images = (images - MNIST_MEAN) / MNIST_STD
    norms = []
    for seed in range(5):
        torch.manual_seed(seed)
        with torch.no_grad():
            features, _ = LeNetsPP(init=init)(images)
        norms.append(features.norm(dim=1).median())
    return torch.stack(norms).median().item()


def test_xavier_features_much_larger_than_default() -> None:
    xavier, default = _median_feature_norm("xavier"), _median_feature_norm("default")
    assert default < 0.05
    assert xavier / default > 10


@pytest.mark.parametrize("shape", [(2, 28, 28), (2, 3, 28, 28), (2, 1, 32, 32)])
def test_bad_input_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        LeNetsPP()(torch.randn(*shape))


def test_bad_init_name() -> None:
    with pytest.raises(ValueError, match="xavier"):
        LeNetsPP(init="kaiming")
