"""The authors' checkpoint layouts (dc, mcl_okd, od_cheap, anchornet) import to equal logits.

Each test builds a checkpoint in the source's exact layout — top-level dict entries, key names,
nesting, ``module.`` prefixes — from *our* architecture with its keys renamed to the authors'
(the renaming here is written from the authors' code, independently of the importers' tables;
the comment above each names the files and lines), imports it, and checks that the run's
logits equal the source network's (max abs diff <= 1e-5). Random BN statistics and scales
make a misplaced tensor visible.
"""

import re

import pytest
import torch

import analysis
from tests.runs.helpers import (
    TOLERANCE,
    build_source_model,
    dc_names,
    images,
    max_logit_diff,
    sgd_state,
)


def _rename(state: dict, rules: list[tuple[str, str]], *, prefix: str = "") -> dict:
    out = {}
    for key, tensor in state.items():
        if key.startswith("normalize."):
            continue
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        out[prefix + key] = tensor
    return out


def test_dc_checkpoint(tmp_path):
    # FreeformRobotics/Divide-and-Co-training@e8ff821: train_split.py:346-357 saves
    # {epoch, arch, state_dict, best_acc1, optimizer} as checkpoint_<epoch>.pth.tar;
    # state_dict of the (Distributed)DataParallel-wrapped SplitNet (module.), whose
    # self.models = nn.ModuleList (model/splitnet.py:202); model/resnet.py: stem
    # layer0 = Sequential(conv, BN, ReLU) (line 236), blocks conv1..bn3, downsample, fc.
    config = {
        "method": {"name": "divide_cotrain"},
        "model": {
            "arch": "cifar_resnet",
            "peers": 2,
            "options": {"depth": 110, "block": "bottleneck"},
        },
    }
    model, bundle = build_source_model(config, "test_shapes")
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("normalize.")}
    renamed = {"module." + re.sub(r"^peers\.", "models.", k): v for k, v in dc_names(state).items()}
    assert "module.models.1.layer0.0.weight" in renamed
    assert "module.models.0.layer2.0.downsample.1.weight" in renamed  # conv after the pool
    assert "module.models.0.layer1.0.downsample.1.running_var" in renamed  # BN at stride 1
    ckpt = {
        "epoch": 300,
        "arch": "resnet110",
        "state_dict": renamed,
        "best_acc1": torch.tensor(77.5),
        "optimizer": sgd_state(model),
    }
    torch.save(ckpt, tmp_path / "model_best.pth.tar")
    run = analysis.import_checkpoints(
        [tmp_path / "model_best.pth.tar"], source="dc", out=tmp_path / "run",
        data={"name": "test_shapes"}, mean=list(bundle.mean), std=list(bundle.std),
    )  # fmt: skip
    assert run.manifest["method"] == "divide_cotrain" and run.model.num_peers == 2
    assert run.config["model"]["options"].items() >= {"depth": 110, "block": "bottleneck"}.items()
    assert max_logit_diff(run, model, images(bundle)) <= TOLERANCE
    assert run.manifest["provenance"]["files"][0]["file_entries"]["arch"] == "resnet110"


def test_mcl_okd_checkpoint(tmp_path):
    # winycg/MCL-OKD@5de042a: main_cifar_mcl_okd.py:290-298 saves {net, acc, epoch,
    # optimizer} as checkpoint/mcl_okd_resnet32.pth.tar; net = DataParallel state dict
    # (line 88, module.); models/mcl_okd_resnet.py:132-144: conv1, bn1, layer1 shared,
    # layer2_<i>, layer3_<i>, classifier_<i> per branch, downsample = conv1x1 + BN (170).
    # The embedding heads live in the loss (mcl/criterion.py:11-14): not in the file.
    config = {"method": {"name": "mcl_okd"}, "model": {"arch": "resnet32", "peers": 4}}
    model, bundle = build_source_model(config, "test_shapes")
    rules = [
        (r"^trunk\.", ""),
        (r"^branches\.(\d+)\.(layer[23])\.", r"\2_\1."),
        (r"^branches\.(\d+)\.fc\.", r"classifier_\1."),
        (r"\.shortcut\.", ".downsample."),
    ]
    net = _rename(model.state_dict(), rules, prefix="module.")
    net = {k: v for k, v in net.items() if not k.startswith("module.embed.")}
    assert {"module.layer1.0.conv1.weight", "module.layer3_3.4.bn2.bias"} <= set(net)
    assert "module.classifier_2.weight" in net and "module.layer2_0.0.downsample.1.weight" in net
    torch.save(
        {"net": net, "acc": 75.3, "epoch": 299, "optimizer": sgd_state(model)},
        tmp_path / "mcl_okd_resnet32_best.pth.tar",
    )
    run = analysis.import_checkpoints(
        [tmp_path / "mcl_okd_resnet32_best.pth.tar"], source="mcl_okd", out=tmp_path / "run",
        data={"name": "test_shapes"}, mean=list(bundle.mean), std=list(bundle.std),
    )  # fmt: skip
    assert run.config["model"]["peers"] == 4
    assert run.config["model"]["options"].items() >= {"depth": 32, "block": "basic"}.items()
    assert max_logit_diff(run, model, images(bundle)) <= TOLERANCE
    mapping = run.manifest["provenance"]["mapping"]
    assert mapping["left_at_init"] and all(k.startswith("embed.") for k in mapping["left_at_init"])
    assert "loss module" in mapping["left_at_init_why"]


@pytest.mark.parametrize("op", ["depthwise", "group", "shift"])
def test_od_cheap_checkpoint(tmp_path, op):
    # EthanZhangYC/OD-cheap-convolution@a405c9e: main_teacher.py:104-114 saves {state_dict,
    # test_prec, best_prec, optimizer, scheduler, epoch} via utils/common.py:68-74 as
    # model_best_<prec>.pt; DataParallel (module.) with several GPUs (line 51);
    # model/cifar10/shiftresnet.py:216-233: resnet_m1..resnet_m4, teacher norm + fc; blocks
    # dw1|group1|shift1, conv1, bn1, dw2|group2|shift2, conv2, bn2, shortcut (conv + BN).
    options = {"depth": 56, "op": op, "groups": 2}
    config = {"method": {"name": "od_cheap"}, "model": {"arch": "cheap_resnet", "peers": 4, "options": options}}  # fmt: skip
    model, bundle = build_source_model(config, "test_shapes")
    cheap = {"depthwise": "dw", "group": "group", "shift": "shift"}[op]
    rules = [
        *((rf"^peers\.{i}\.", f"resnet_m{i + 1}.") for i in range(4)),
        (r"\.op([12])\.", rf".{cheap}\1."),
        (r"^teacher\.bn\.", "norm."),
        (r"^teacher\.fc\.", "fc."),
    ]
    state = _rename(model.state_dict(), rules, prefix="module.")
    assert {"module.norm.running_var", "module.fc.weight", "module.resnet_m4.fc.bias"} <= set(state)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[150, 225])
    ckpt = {
        "state_dict": state,
        "test_prec": torch.tensor(93.1),
        "best_prec": torch.tensor(93.4),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),  # its milestones are a collections.Counter
        "epoch": 300,
    }
    torch.save(ckpt, tmp_path / "model_best_93.pt")
    run = analysis.import_checkpoints(
        [tmp_path / "model_best_93.pt"], source="od_cheap", out=tmp_path / "run",
        data={"name": "test_shapes"}, mean=list(bundle.mean), std=list(bundle.std),
    )  # fmt: skip
    chosen = run.config["model"]["options"]
    assert chosen["op"] == op and chosen["depth"] == 56
    assert op != "group" or chosen["groups"] == 2
    assert max_logit_diff(run, model, images(bundle)) <= TOLERANCE


@pytest.mark.parametrize("released", [True, False])
def test_anchornet_checkpoint(tmp_path, released):
    # winycg/AnchorNet@21169f7: train_anchornet.py:238-244 saves {net, acc, epoch, optimizer}
    # as anchornet.pth.tar with net = net.module.state_dict() (no module.); line 265 saves the
    # best net alone as anchornet.pth (what predict.py:171-172 loads). models/anchornet.py:
    # conv1, bn1, bneck.0-6 (conv1/bn1 expansion, conv2/bn2 depthwise, se.se1/se.se2,
    # conv3/bn3), exp_conv, fc; bneck.0 (expansion 1) builds conv1/bn1 it never runs (line 83).
    config = {"method": {"name": "independent"}, "model": {"arch": "anchornet", "peers": 1, "options": {"layout": "reference"}}}  # fmt: skip
    model, bundle = build_source_model(config, "test_shapes", image_size=96)
    rules = [
        (r"^peers\.0\.stem\.0\.", "conv1."),
        (r"^peers\.0\.stem\.1\.", "bn1."),
        *((rf"^peers\.0\.layer{i + 1}\.", f"bneck.{i}.") for i in range(7)),
        (r"\.expand\.0\.", ".conv1."),
        (r"\.expand\.1\.", ".bn1."),
        (r"\.depthwise\.0\.", ".conv2."),
        (r"\.depthwise\.1\.", ".bn2."),
        (r"\.se\.reduce\.", ".se.se1."),
        (r"\.se\.expand\.", ".se.se2."),
        (r"\.project\.0\.", ".conv3."),
        (r"\.project\.1\.", ".bn3."),
        (r"^peers\.0\.features_map\.", "exp_conv."),
        (r"^peers\.0\.fc\.", "fc."),
    ]
    net = _rename(model.state_dict(), rules)
    net["bneck.0.conv1.weight"] = torch.randn(16, 16, 1, 1)  # built, never run (line 83)
    for name, value in (
        ("weight", 1.0),
        ("bias", 0.0),
        ("running_mean", 0.0),
        ("running_var", 1.0),
    ):
        net[f"bneck.0.bn1.{name}"] = torch.full((16,), value)
    net["bneck.0.bn1.num_batches_tracked"] = torch.tensor(0)
    assert {"exp_conv.bias", "bneck.6.se.se2.weight", "bneck.2.conv1.weight"} <= set(net)
    path = tmp_path / ("anchornet.pth" if released else "anchornet_best.pth.tar")
    torch.save(net if released else {"net": net, "acc": 70.0, "epoch": 89, "optimizer": sgd_state(model)}, path)  # fmt: skip
    run = analysis.import_checkpoints(
        [path], source="anchornet", out=tmp_path / "run",
        data={"name": "test_shapes", "image_size": 96}, mean=list(bundle.mean), std=list(bundle.std),
    )  # fmt: skip
    assert max_logit_diff(run, model, images(bundle, 2)) <= TOLERANCE
    dropped = run.manifest["provenance"]["mapping"]["dropped"]
    assert sorted(dropped)[0] == "0/bneck.0.bn1.bias" and len(dropped) == 6


def test_dc_wide_resnet_checkpoint(tmp_path):
    # The same layout (train_split.py:346-357, model/splitnet.py:202) for a WRN-16-8 split in
    # two: model/resnet.py:57-94 (post-activation BasicBlock: conv1, bn1, conv2, bn2,
    # downsample = Sequential(conv, BN)) and 236-246 (layer0 stem, no final BN).
    config = {
        "method": {"name": "divide_cotrain"},
        "model": {"arch": "wrn", "peers": 2, "options": {"depth": 16, "widen": 8}},
    }
    model, bundle = build_source_model(config, "test_shapes")
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("normalize.")}
    renamed = {"module." + re.sub(r"^peers\.", "models.", k): v for k, v in dc_names(state).items()}
    torch.save({"epoch": 1, "arch": "wide_resnet16_8", "state_dict": renamed}, tmp_path / "w.pth")
    run = analysis.import_checkpoints(
        [tmp_path / "w.pth"], source="dc", out=tmp_path / "run",
        data={"name": "test_shapes"}, mean=list(bundle.mean), std=list(bundle.std),
    )  # fmt: skip
    assert run.model.num_peers == 2
    assert sum(p.numel() for p in run.model.parameters()) == sum(
        p.numel() for p in model.parameters()
    )
    assert max_logit_diff(run, model, images(bundle)) <= TOLERANCE
