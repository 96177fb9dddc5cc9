import hashlib
import urllib.error
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import ResNet18_Weights

from ferlib.data import MNIST_MEAN, MNIST_STD
from ferlib.models import (
    LeNetsPP,
    PretrainedWeightsUnavailableError,
    ResNet18,
    resnet18_weights_path,
)


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


# --- ResNet18 ---------------------------------------------------------------------------

IMAGENET_URL = ResNet18_Weights.IMAGENET1K_V1.url


@pytest.mark.parametrize(("size", "grid"), [(90, 3), (224, 7)])
def test_resnet18_shapes(size: int, grid: int) -> None:
    torch.manual_seed(0)
    model = ResNet18(num_classes=7).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        features, logits = model(x)
        trunk = nn.Sequential(*list(model.backbone.children())[:-2])  # up to layer4
        maps = trunk(x)
    assert features.shape == (2, 512) and logits.shape == (2, 7)
    assert maps.shape == (2, 512, grid, grid)
    # the feature is the global average pool of layer4; the logits a linear map of it
    assert torch.allclose(features, maps.mean(dim=(2, 3)), atol=1e-5)
    assert torch.allclose(logits, model.classifier(features), atol=1e-6)


def test_resnet18_attributes() -> None:
    model = ResNet18(num_classes=8)
    assert (model.num_classes, model.feat_dim) == (8, 512)
    assert isinstance(model.num_classes, int) and isinstance(model.feat_dim, int)
    assert ResNet18().num_classes == 7
    assert model.classifier.in_features == 512 and model.classifier.out_features == 8
    assert model.classifier.bias is not None
    assert isinstance(model.backbone, torchvision.models.ResNet)
    assert isinstance(model.backbone.fc, nn.Identity)
    assert sum(p.numel() for p in model.parameters()) == 11_176_512 + 512 * 8 + 8


def test_resnet18_gradients_reach_features_and_trunk() -> None:
    torch.manual_seed(0)
    model = ResNet18(num_classes=7)
    features, logits = model(torch.randn(4, 3, 90, 90))
    features.retain_grad()
    loss = nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3]))
    loss = loss + 0.01 * features.pow(2).sum()  # a center-loss-like term on the features
    loss.backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    assert model.classifier.weight.grad.abs().sum() > 0


def test_resnet18_random_init_deterministic_under_seed() -> None:
    torch.manual_seed(3)
    a = ResNet18(num_classes=7).state_dict()
    torch.manual_seed(3)
    b = ResNet18(num_classes=7).state_dict()
    torch.manual_seed(4)
    c = ResNet18(num_classes=7).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["backbone.conv1.weight"], c["backbone.conv1.weight"])


def _expected_weights_path(torch_home: Path) -> Path:
    """Independent of ferlib: torch hub's cache, file name from torchvision's URL."""
    return torch_home / "hub" / "checkpoints" / Path(urlparse(IMAGENET_URL).path).name


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty TORCH_HOME, and a torch hub whose download fails as it does offline."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case something called set_dir

    def offline(url: str, dst: str, *args, **kwargs) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return home


def test_resnet18_weights_path(empty_torch_home: Path) -> None:
    assert resnet18_weights_path() == _expected_weights_path(empty_torch_home)
    assert resnet18_weights_path().name == "resnet18-f37072fd.pth"


def test_resnet18_imagenet_offline_error(empty_torch_home: Path) -> None:
    expected = _expected_weights_path(empty_torch_home)
    with pytest.raises(PretrainedWeightsUnavailableError) as info:
        ResNet18(weights="imagenet")
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert "downloading the ImageNet weights failed" in message
    assert "name resolution" in message  # the underlying reason
    assert str(expected) in message
    assert IMAGENET_URL in message
    assert "weights=None" in message
    assert info.value.path == expected and info.value.url == IMAGENET_URL
    assert isinstance(info.value.__cause__, urllib.error.URLError)
    assert not expected.exists()


def test_resnet18_imagenet_loads_placed_file(empty_torch_home: Path) -> None:
    """A file placed at the cache path is loaded, with no download (the fixture's download
    fails). Honest about hashes: torchvision asks for ``check_hash=True``, but torch hub
    checks the SHA-256 prefix in the file name (``f37072fd``) only when it downloads; a
    file already in the cache is loaded as is. The fake file below does not have that
    hash, so loading it proves the check is not applied to cached files."""
    torch.manual_seed(123)
    fake = torchvision.models.resnet18(weights=None).state_dict()  # 1000-class head
    path = _expected_weights_path(empty_torch_home)
    path.parent.mkdir(parents=True)
    torch.save(fake, path)
    assert not hashlib.sha256(path.read_bytes()).hexdigest().startswith("f37072fd")

    torch.manual_seed(0)
    model = ResNet18(num_classes=7, weights="imagenet")
    loaded = model.backbone.state_dict()
    assert set(loaded) == {k for k in fake if not k.startswith("fc.")}
    assert all(torch.equal(loaded[k], fake[k]) for k in loaded)
    assert model.classifier.weight.shape == (7, 512)
    torch.manual_seed(0)
    scratch = ResNet18(num_classes=7).backbone.state_dict()
    assert not torch.equal(loaded["conv1.weight"], scratch["conv1.weight"])


def test_resnet18_imagenet_damaged_file(empty_torch_home: Path) -> None:
    path = _expected_weights_path(empty_torch_home)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"<html>404 Not Found</html>")  # e.g. a failed manual download
    with pytest.raises(PretrainedWeightsUnavailableError, match="loading the ImageNet weights"):
        ResNet18(weights="imagenet")
    wrong = {"conv1.weight": torch.zeros(64, 3, 7, 7)}  # not a ResNet-18 checkpoint
    torch.save(wrong, path)
    with pytest.raises(PretrainedWeightsUnavailableError, match="delete it") as info:
        ResNet18(weights="imagenet")
    assert str(path) in str(info.value) and "weights=None" in str(info.value)


@pytest.mark.parametrize("num_classes", [0, -1, 7.0, True, "7"])
def test_resnet18_bad_num_classes(num_classes) -> None:
    with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
        ResNet18(num_classes=num_classes)


@pytest.mark.parametrize("weights", ["ImageNet", "IMAGENET1K_V1", ResNet18_Weights.IMAGENET1K_V1])
def test_resnet18_bad_weights(weights) -> None:
    with pytest.raises(ValueError, match=r"weights must be 'imagenet'.*or None"):
        ResNet18(weights=weights)


def test_resnet18_bad_input() -> None:
    model = ResNet18()
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(2, 1, 90, 90))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(3, 90, 90))
    with pytest.raises(TypeError, match=r"float images.*normalize"):
        model(torch.zeros(2, 3, 90, 90, dtype=torch.uint8))
