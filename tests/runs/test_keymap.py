"""The declarative key mapping: alternatives by shape, declared gaps, one-line failures."""

import pytest
import torch

from analysis.errors import CollabError
from analysis.models import create_model
from analysis.runs.importers.dc import DC_KEYMAP
from analysis.runs.importers.keymap import KeyMap, apply_keymap
from tests.runs.helpers import dc_names


def _t(*shape):
    return torch.zeros(shape)


def test_alternatives_are_chosen_by_name_and_shape():
    keymap = KeyMap(rules=((r"^down\.\d\.", ("sc.0.", "sc.1.", "sc.2.")),))
    assert keymap.candidates("down.1.weight") == ["sc.0.weight", "sc.1.weight", "sc.2.weight"]
    target = {"sc.1.weight": _t(4, 2, 1, 1), "sc.2.weight": _t(4), "sc.2.bias": _t(4)}
    source = {"down.1.weight": _t(4, 2, 1, 1), "down.2.weight": _t(4), "down.2.bias": _t(4)}
    mapped = apply_keymap(source, target, keymap, what="f")
    assert mapped.pairs == {
        "down.1.weight": "sc.1.weight",
        "down.2.weight": "sc.2.weight",
        "down.2.bias": "sc.2.bias",
    }


def test_declared_gaps_are_recorded_not_fatal():
    keymap = KeyMap(absent=(r"^embed\.",), dropped=(r"^unused\.",))
    target = {"a": _t(2), "embed.w": _t(3), "bn.num_batches_tracked": torch.tensor(0)}
    mapped = apply_keymap({"a": _t(2), "unused.w": _t(5)}, target, keymap, what="f")
    assert mapped.left_at_init == ["embed.w", "bn.num_batches_tracked"]
    assert mapped.dropped == ["unused.w"]


def test_failure_is_one_line_with_missing_unexpected_misshaped_and_advice():
    target = {"a": _t(2), "b": _t(3), "c": _t(4)}
    source = {"a": _t(2), "b": _t(9), "x": _t(1), "y": _t(1)}
    with pytest.raises(CollabError) as err:
        apply_keymap(source, target, KeyMap(), what="f.pth", hint=lambda: "try --source dc")
    message = str(err.value)
    assert message == (
        "f.pth does not fit the model: missing 1 (c), unexpected 2 (x; y), "
        "mis-shaped 1 (b (9,) -> b (3,)); try --source dc"
    )


def test_two_tensors_never_fill_one_target():
    keymap = KeyMap(rules=((r"^(p|q)\.", "t."),))
    with pytest.raises(CollabError, match=r"unexpected 1 \(q.w \(-> t.w\)\)"):
        apply_keymap({"p.w": _t(1), "q.w": _t(1)}, {"t.w": _t(1)}, keymap, what="f")


@pytest.mark.parametrize("arch", ["cifar_resnet", "dc_resnet"])
def test_dc_table_fits_our_shortcut_with_and_without_pooling(arch):
    try:
        net = create_model(arch, num_classes=10, depth=11, block="bottleneck")
    except CollabError:
        pytest.skip(f"{arch} is not registered in this checkout")
    authors = dc_names(dict(net.state_dict()))
    assert "layer2.0.downsample.1.weight" in authors and "layer0.0.weight" in authors
    mapped = apply_keymap(authors, net.state_dict(), DC_KEYMAP, what="f")
    assert all(torch.equal(mapped.state[k], v) for k, v in net.state_dict().items())
