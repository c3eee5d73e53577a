"""torchvision.transforms.v2 pipelines: presets, lists, seeded views, full-size image folders."""

import numpy as np
import pytest
import torch
from PIL import Image

from analysis.config import load_config
from analysis.data import build_dataset
from analysis.data.pipeline import SeededViews, build_steps, resolve
from analysis.errors import CollabError
from analysis.runs import load_run
from analysis.training import Trainer
from tests.conftest import DML_PRESET, TINY


def _folder(root, sizes):
    """``root/{train,test}/<class>/*.png`` with images of the given (width, height) sizes."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i, (w, h) in enumerate(sizes):
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.png")


def test_no_transforms_keeps_the_dataset_preset():
    assert resolve(None, None, image_size=32) is None
    bundle = build_dataset("test_digits")
    assert bundle.augment is None and bundle.augment_source is None


def test_cifar_preset_views_are_seeded_and_leave_the_global_rng_alone():
    pipeline = resolve("cifar", None, image_size=32)
    assert [type(s).__name__ for s in pipeline.train] == ["RandomCrop", "RandomHorizontalFlip"]
    assert pipeline.train[0].padding == [4, 4, 4, 4] and pipeline.eval == ()
    views, img = SeededViews(pipeline.train), torch.rand(3, 32, 32)
    state = torch.get_rng_state()
    a = views(img, torch.Generator().manual_seed(5))
    b = views(img, torch.Generator().manual_seed(5))
    others = [views(img, torch.Generator().manual_seed(s)) for s in range(6, 12)]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and a.shape == img.shape
    assert any(not torch.equal(a, o) for o in others)


def test_a_list_of_steps_with_arguments_and_autoaugment():
    steps = build_steps(
        [{"RandomResizedCrop": {"size": 20, "scale": [0.5, 1.0]}}, "AutoAugment"], key="k"
    )
    out = SeededViews(steps)(torch.rand(3, 32, 32), torch.Generator().manual_seed(0))
    assert out.shape == (3, 20, 20) and out.dtype == torch.float32


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (["NoSuchTransform"], "is not a torchvision.transforms.v2 transform"),
        (["MixUp"], "set data.mixup_alpha or data.cutmix_alpha instead"),
        ([{"RandomCrop": {"bogus": 1}}], "is invalid"),
        ([{"RandomCrop": 3, "x": 1}], "one-key mapping"),
    ],
)
def test_bad_steps_are_one_line_errors(spec, message):
    with pytest.raises(CollabError, match=message) as err:
        build_steps(spec, key="data.transforms")
    assert "\n" not in str(err.value)


def test_unknown_preset_names_the_choices():
    with pytest.raises(CollabError, match="choose one of: cifar, imagenet"):
        resolve("imagenett", None, image_size=32)


def test_imagenet_preset_reads_full_size_images_and_evaluates_at_224(tmp_path):
    _folder(tmp_path, [(300, 260), (257, 400)])
    bundle = build_dataset("imagefolder", root=str(tmp_path), transforms="imagenet")
    assert bundle.image_size == 224
    raw = bundle.augment_source[1][0]
    assert raw.shape == (3, 400, 257)  # as on disk: nothing resized while reading
    assert bundle.train[1][0].shape == (3, 224, 224) == bundle.test[3][0].shape
    view = bundle.augment(raw, torch.Generator().manual_seed(0))
    assert view.shape == (3, 224, 224)
    # Resize(256) of the short side then a centre crop: the middle of the resized image
    expected = torch.nn.functional.interpolate(
        raw[None], size=(398, 256), mode="bilinear", antialias=True, align_corners=False
    )[0, :, 87:311, 16:240]
    assert torch.allclose(bundle.train[1][0], expected, atol=2e-2)


def test_training_with_the_imagenet_preset_end_to_end(tmp_path):
    _folder(tmp_path / "data", [(240, 230), (250, 226), (231, 260)])
    sets = [*TINY, "data.name=imagefolder", f"data.root={tmp_path / 'data'}"]
    sets += ["data.transforms=imagenet", "train.epochs=1", "data.batch_size=4"]
    config = load_config(DML_PRESET, sets)
    out = Trainer(config, tmp_path / "run", progress=False).fit()
    run = load_run(out)
    assert run.data.test[0][0].shape == (3, 224, 224)
    assert run.config["data"]["transforms"] == "imagenet"
    assert (out / "checkpoints" / "best.safetensors").is_file()


def test_transforms_are_written_to_the_config_only_when_set(tmp_path):
    plain = load_config(DML_PRESET, []).to_dict()["data"]
    assert "transforms" not in plain and "eval_transforms" not in plain
    listed = load_config(DML_PRESET, ["data.transforms=[RandomHorizontalFlip]"]).to_dict()
    assert listed["data"]["transforms"] == ["RandomHorizontalFlip"]
