"""Fused peers keep the peers' tensors in fused storage: no copies a step, never stale weights."""

from __future__ import annotations

import collections
import copy
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from analysis.models.fused import FusedConv2d
from analysis.models.fused_storage import SharedStorage
from analysis.runs.checkpoint import load_weights, save_weights
from tests.models.test_fused import pair, step


class Ops(TorchDispatchMode):
    """Counts the aten operations run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.count: collections.Counter[str] = collections.Counter()
        self.copied: list[int] = []  # dimensions of every tensor copied or cloned

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.count[name] += 1
        if name in ("copy_", "clone"):
            self.copied.append(args[0].dim())
        return func(*args, **(kwargs or {}))


def _assert_grads_match(model, twin, tol: float = 1e-5) -> None:
    for (name, a), b in zip(model.named_parameters(), twin.parameters(), strict=True):
        if a.grad is None:
            assert b.grad is None, name
            continue
        scale = max(1.0, float(a.grad.abs().max()))
        torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=tol * scale, msg=name)


@pytest.mark.parametrize("nhwc", [False, True], ids=["nchw", "nhwc"])
def test_a_fused_step_copies_no_weights_and_the_peers_live_in_the_fused_tensors(nhwc) -> None:
    model, twin, fused = pair("resnet8", {"width": 8})
    if nhwc:
        model, twin = (m.to(memory_format=torch.channels_last) for m in (model, twin))
        fused = type(fused)(twin)
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 7, (8,))
    step(fused, x, y)  # the first call moves the peers' tensors into fused storage
    strides = [p.stride() for p in model.parameters()]
    assert [p.stride() for p in twin.parameters()] == strides  # the peers' layout is kept
    convs = [m for m in fused.modules() if isinstance(m, FusedConv2d)]
    for conv in convs:
        storage = conv.shared_weight.fused().untyped_storage().data_ptr()
        for peer in conv.peers:
            assert peer.weight.untyped_storage().data_ptr() == storage
    h = twin.normalize(x).repeat(1, 3, 1, 1)  # the fused network's input: peer-major channels
    h = h.contiguous(memory_format=torch.channels_last) if nhwc else h
    ops = Ops()
    with ops:
        fused.net(h).square().sum().backward()
    for copying in ("cat", "stack", "_foreach_copy_"):
        assert ops.count[copying] == 0, copying
    # No kernel (4-D), batch-norm parameter or statistic (1-D) is copied: only the classifier's
    # reshapes and its (K, C, D) weight gradient's layout are.
    assert all(dim in (2, 3) for dim in ops.copied), ops.copied
    assert ops.count["convolution"] == len(convs)


def test_gradients_accumulate_across_backward_passes_as_without_fusing() -> None:
    model, twin, fused = pair("resnet8", {"width": 8})
    for _ in range(2):  # no zero_grad in between: the second backward adds to the first
        x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 7, (8,))
        step(model, x, y), step(fused, x, y)
    _assert_grads_match(model, twin)


def test_a_frozen_peer_parameter_gets_no_gradient() -> None:
    model, twin, fused = pair("resnet8", {"width": 8})
    for m in (model, twin):
        m.peers[1].conv1.weight.requires_grad_(False)
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 7, (8,))
    step(model, x, y), step(fused, x, y)
    assert twin.peers[1].conv1.weight.grad is None and twin.peers[0].conv1.weight.grad is not None
    _assert_grads_match(model, twin)


def test_weights_given_new_storage_are_fused_again_not_left_stale() -> None:
    model, twin, fused = pair("resnet8", {"width": 8})
    x = torch.rand(8, 3, 16, 16)
    model(x), fused(x)  # fuse now, then move to float64 (new storage for every tensor)
    model, twin = model.double(), twin.double()
    model.eval(), fused.eval()
    with torch.no_grad():  # (the float32 training forward left statistics ~1e-8 apart)
        torch.testing.assert_close(
            fused(x.double()).peer_logits, model(x.double()).peer_logits, rtol=0, atol=1e-6
        )
    fresh, _, _ = pair("resnet8", {"width": 8}, dtype=torch.float64)
    twin.load_state_dict(fresh.state_dict(), assign=True)  # new tensor objects, new values
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            fused(x.double()).peer_logits, fresh(x.double()).peer_logits, rtol=0, atol=1e-10
        )


def test_loaded_and_stepped_weights_reach_the_fused_network(tmp_path: Path) -> None:
    model, twin, fused = pair("resnet8", {"width": 8})
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 7, (8,))
    opt = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    step(fused, x, y)
    opt.step()  # the optimizer steps the peers' own parameters: the fused tensors' views
    save_weights(tmp_path / "w.safetensors", twin)
    saved = copy.deepcopy(twin.state_dict())
    load_weights(model, tmp_path / "w.safetensors")  # an unfused copy of what was saved
    model.eval(), fused.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused(x).peer_logits, model(x).peer_logits, atol=1e-5, rtol=0)
    fresh, _, _ = pair("resnet8", {"width": 8})
    twin.load_state_dict(fresh.state_dict())  # in place, into the fused storage
    assert not all(torch.equal(v, saved[k]) for k, v in twin.state_dict().items())
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused(x).peer_logits, fresh(x).peer_logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("stack", [False, True])
def test_shared_storage_keeps_each_tensor_its_values_strides_and_identity(stack) -> None:
    convs = [torch.nn.Conv2d(3, 4, 2).to(memory_format=torch.channels_last) for _ in range(3)]
    tensors = [c.weight for c in convs]
    before = [(t.clone(), t.stride(), id(t)) for t in tensors]
    fused = SharedStorage(convs, "weight", stack=stack).fused()
    assert fused.shape == ((3, 4, 3, 2, 2) if stack else (12, 3, 2, 2))
    for t, (values, stride, ident) in zip(tensors, before, strict=True):
        assert torch.equal(t, values) and t.stride() == stride and id(t) == ident
    fused.detach().mul_(2)  # one storage: a change to the fused tensor is the peers' change
    assert all(torch.equal(t, 2 * values) for t, (values, _, _) in zip(tensors, before))


def test_a_single_output_channel_kernel_is_fused_without_overlap() -> None:
    convs = [torch.nn.Conv2d(3, 1, 1) for _ in range(3)]  # (1, 3, 1, 1): any stride on dim 0
    for c in convs:
        c.weight.data = c.weight.data.as_strided((1, 3, 1, 1), (1, 1, 1, 1))
    values = [c.weight.clone() for c in convs]
    fused = SharedStorage(convs, "weight").fused()
    assert fused.shape == (3, 3, 1, 1)
    assert torch.equal(fused.detach(), torch.cat(values))
