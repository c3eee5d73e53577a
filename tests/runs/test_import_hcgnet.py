"""``--source hcgnet``: the authors' checkpoint layouts (winycg/HCGNet@229ad0b) import to equal logits.

As in test_import_authors.py: a checkpoint in the authors' exact layout is built from *our*
network with its keys renamed to theirs (the renaming written here from their code, not from
the importer's table), imported, and the run's logits must equal the source network's.

Their names (models/HCGNet_CIFAR.py:10-215, models/HCGNet_ImageNet.py:7-214): ``features.conv0``
(CIFAR stem) or ``features.conv0/norm0/conv1/norm1/conv2/norm2`` (ImageNet stem),
``features.HybridBlock<i>.SMG<j>`` / ``features.hybridblock<i>.SMG<j>``,
``features.Transition<i>`` / ``features.transition<i>``, ``features.norm5``, ``classifier``;
in a unit ``conv1_1x1``, ``conv2_3x3`` (``norm``, ``conv``), ``conv_3x3``, ``conv_5x5``,
``global_context3x3/5x5``, ``fcall``, ``bn_attention``, ``fc3x3``, ``fc5x5``,
``global_forget_context``, ``fc1``, ``bn_forget``, ``fc2``.
"""

import re

import pytest
import torch

import analysis
from analysis.errors import CollabError
from tests.runs.helpers import TOLERANCE, build_source_model, images, max_logit_diff, sgd_state

UNIT_RULES = [
    (r"\.(SMG\d+|Transition\d|transition\d)\.reduce\.", r".\1.conv1_1x1."),
    (r"\.(SMG\d+|Transition\d|transition\d)\.conv\.", r".\1.conv2_3x3."),
    (r"\.update\.dw3\.", ".conv_3x3."),
    (r"\.update\.dw5\.", ".conv_5x5."),
    (r"\.update\.context3\.", ".global_context3x3."),
    (r"\.update\.context5\.", ".global_context5x5."),
    (r"\.update\.squeeze\.", ".fcall."),
    (r"\.update\.bn\.", ".bn_attention."),
    (r"\.update\.excite3\.", ".fc3x3."),
    (r"\.update\.excite5\.", ".fc5x5."),
    (r"\.forget\.context\.", ".global_forget_context."),
    (r"\.forget\.squeeze\.", ".fc1."),
    (r"\.forget\.bn\.", ".bn_forget."),
    (r"\.forget\.excite\.", ".fc2."),
    (r"\.bn\.", ".norm."),  # BasicConv: norm -> relu -> conv
]
CIFAR_RULES = [
    (r"^conv1\.", "features.conv0."),
    (r"^layer(\d)\.smg(\d+)\.", r"features.HybridBlock\1.SMG\2."),
    (r"^transition(\d)\.", r"features.Transition\1."),
    (r"^bn\.", "features.norm5."),
    (r"^fc\.", "classifier."),
    *UNIT_RULES,
]
IMAGENET_RULES = [
    (r"^stem\.conv1\.", "features.conv0."),
    (r"^stem\.bn1\.", "features.norm0."),
    (r"^stem\.conv2\.", "features.conv1."),
    (r"^stem\.bn2\.", "features.norm1."),
    (r"^stem\.conv3\.", "features.conv2."),
    (r"^stem\.bn3\.", "features.norm2."),
    (r"^layer(\d)\.smg(\d+)\.", r"features.hybridblock\1.SMG\2."),
    (r"^transition(\d)\.", r"features.transition\1."),
    (r"^bn\.", "features.norm5."),
    (r"^fc\.", "classifier."),
    *UNIT_RULES,
]


def _authors_net(model: torch.nn.Module, peer: int, rules: list) -> dict[str, torch.Tensor]:
    """Peer ``peer``'s tensors under the authors' names, ``module.``-prefixed (DataParallel)."""
    out = {}
    for key, tensor in model.state_dict().items():
        if not key.startswith(f"peers.{peer}."):
            continue
        key = key[len(f"peers.{peer}.") :]
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        out["module." + key] = tensor
    return out


def _import(paths, tmp_path, bundle, **options):
    return analysis.import_checkpoints(
        paths, source="hcgnet", out=tmp_path / "run", data={"name": bundle.name,
        "image_size": bundle.image_size}, mean=list(bundle.mean), std=list(bundle.std), **options,
    )  # fmt: skip


def test_cifar_checkpoint_names_its_network(tmp_path):
    # main_cifar.py:236-244: {net, acc, epoch, optimizer} as checkpoint/HCGNet_A1.pth.tar, the
    # best copied to HCGNet_A1_best.pth.tar (251-253); net of DataParallel (line 109): module.
    config = {"method": {"name": "independent"}, "model": {"arch": "hcgnet_a1", "peers": 1}}
    model, bundle = build_source_model(config, "test_shapes")
    net = _authors_net(model, 0, CIFAR_RULES)
    assert {
        "module.features.conv0.weight",
        "module.features.HybridBlock3.SMG8.conv2_3x3.norm.running_var",
        "module.features.Transition2.bn_attention.weight",
        "module.features.HybridBlock1.SMG1.global_forget_context.bias",
        "module.features.norm5.bias",
        "module.classifier.weight",
    } <= set(net)
    path = tmp_path / "HCGNet_A1_best.pth.tar"
    torch.save({"net": net, "acc": 96.85, "epoch": 1269, "optimizer": sgd_state(model)}, path)
    run = _import([path], tmp_path, bundle)
    assert run.config["model"]["arch"] == "hcgnet_a1" and run.model.num_peers == 1
    assert max_logit_diff(run, model, images(bundle)) <= TOLERANCE
    provenance = run.manifest["provenance"]
    assert provenance["files"][0]["stripped_prefix"] == "module."
    assert provenance["mapping"]["tensors"] == len(net) and not provenance["mapping"]["dropped"]


def test_imagenet_checkpoint(tmp_path):
    # main_imagenet.py:396-408: {net, epoch, optimizer, best_acc} as HCGNet_B_best.pth.tar (the
    # released file); DistributedDataParallel (line 93): module.
    config = {"method": {"name": "independent"}, "model": {"arch": "hcgnet_b", "peers": 1}}
    model, bundle = build_source_model(config, "test_shapes", image_size=64)
    net = _authors_net(model, 0, IMAGENET_RULES)
    assert {
        "module.features.norm2.running_mean",
        "module.features.hybridblock4.SMG8.conv_5x5.conv.weight",
        "module.features.transition3.fc2.bias",
    } <= set(net)
    path = tmp_path / "HCGNet_B_best.pth.tar"
    torch.save({"net": net, "epoch": 629, "optimizer": {}, "best_acc": 78.5}, path)
    run = _import([path], tmp_path, bundle)
    assert run.config["model"]["arch"] == "hcgnet_b"
    assert max_logit_diff(run, model, images(bundle, 2)) <= TOLERANCE


def test_two_files_are_two_peers_and_unknown_layouts_need_arch(tmp_path):
    config = {"method": {"name": "independent"}, "model": {"arch": "test_hcgnet", "peers": 2}}
    model, bundle = build_source_model(config, "test_shapes")
    paths = []
    for peer in (0, 1):
        paths.append(tmp_path / f"HCGNet_tiny{peer}.pth.tar")
        torch.save({"net": _authors_net(model, peer, CIFAR_RULES), "epoch": 1}, paths[-1])
    with pytest.raises(CollabError, match="cannot tell which HCGNet.*--arch"):
        _import(paths, tmp_path, bundle)
    run = _import(paths, tmp_path, bundle, arch="test_hcgnet")
    assert run.model.num_peers == 2
    assert max_logit_diff(run, model, images(bundle)) <= TOLERANCE
    with pytest.raises(CollabError, match="does not fit the model"):
        _import(paths[:1], tmp_path / "b", bundle, arch="HCGNet_A1")
