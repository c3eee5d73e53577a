"""The probes' shared pass runs NHWC on the CPU (analysis.layout) and leaves the model NCHW."""

import pytest
import torch

import analysis
from analysis.layout import is_channels_last
from analysis.probes.hsic import flat_features, gram_matrices
from analysis.probes.model_state import in_layout
from analysis.probes.shared_pass import run_pass


def conv_weights(model):
    return [p for p in model.parameters() if p.dim() == 4]


class LayoutConsumer:
    """Records whether each batch's activation of one layer was NHWC."""

    def __init__(self, layer):
        self.layers, self.nhwc = [layer], []

    def update(self, acts, batch):
        self.nhwc.append(is_channels_last(acts[self.layers[0]]))

    def result(self):
        return self.nhwc


def test_the_cpu_pass_runs_nhwc_and_hands_the_model_back_nchw(tiny_run):
    run = analysis.load_run(tiny_run)
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    (nhwc,) = run_pass(run.model, run.dataset("test"), [LayoutConsumer("peers.0.layer1")], limit=40)
    assert nhwc and all(nhwc)
    assert all(p.is_contiguous() for p in conv_weights(run.model))
    after = run.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_in_layout_restores_on_error_and_leaves_an_nhwc_model_alone(tiny_run):
    model = analysis.load_run(tiny_run).model
    with pytest.raises(RuntimeError, match="inside"):
        with in_layout(model, True) as m:
            assert all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights(m))
            raise RuntimeError("inside")
    assert all(p.is_contiguous() for p in conv_weights(model))
    model.to(memory_format=torch.channels_last)
    with in_layout(model, True):
        pass
    assert any(is_channels_last(p) for p in conv_weights(model))  # the user's layout, kept
    with in_layout(model, False) as m:
        assert m is model


@pytest.mark.parametrize("pool", [False, True])
def test_nhwc_features_are_a_view_with_the_same_gram(pool):
    x = torch.randn(6, 5, 4, 3, dtype=torch.float64)
    nhwc = x.contiguous(memory_format=torch.channels_last)
    a, b = flat_features(x, pool), flat_features(nhwc, pool)
    if pool:
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    else:
        assert b.data_ptr() == nhwc.data_ptr()  # no copy
        assert torch.equal(b, x.permute(0, 2, 3, 1).reshape(6, -1))  # (H, W, C) order
    torch.testing.assert_close(gram_matrices([a])[0], gram_matrices([b])[0], rtol=1e-12, atol=0)
