"""BatchNorm statistics over every rank of a distributed run, on CPUs (gloo) as well as GPUs.

``torch.nn.SyncBatchNorm`` computes the batch statistics over all ranks but runs on GPUs only;
:class:`RankSyncBatchNorm` does the same with differentiable all-reduces, which gloo runs on the
CPU. With synchronised statistics N ranks normalise exactly as one process with the whole
global batch would, which is what makes a torchrun run match a single-process one.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose backward sums the gradients over the ranks as well."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class RankSyncBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the global batch over all ranks.

    Two passes (global mean, then the global mean of squared deviations), in float64; the
    running statistics are updated as :func:`torch.nn.functional.batch_norm` updates them
    (unbiased variance, ``momentum`` or a cumulative average). Evaluation, and training in a
    single process, is the plain batch norm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        if dist.get_world_size() == 1:
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        # float64 throughout, like the double accumulators of the CPU batch norm: its backward
        # cancels large sums (the input gradient has zero mean), and float32 sums here would
        # leave a residue that the first convolution's weight gradient amplifies.
        x64 = x.double()
        count = torch.tensor([x64.numel() // x64.shape[1]], dtype=torch.float64, device=x.device)
        dist.all_reduce(count)
        n = float(count.item())
        mean = _SumOverRanks.apply(x64.sum(dim=dims)) / n
        centred = x64 - mean.view(shape)
        var = _SumOverRanks.apply(centred.square().sum(dim=dims)) / n
        if self.track_running_stats and self.running_mean is not None:
            self._update_running(mean.detach(), var.detach(), n)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.double().view(shape) + self.bias.double().view(shape)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        self.num_batches_tracked.add_(1)
        if self.momentum is None:
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        unbiased = var * (n / max(n - 1, 1.0))
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every BatchNorm synchronised over the ranks, keeping its parameters and
    buffers (the same tensors under the same names): ``torch.nn.SyncBatchNorm`` on CUDA,
    :class:`RankSyncBatchNorm` elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert(model)


def _convert(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, _BatchNorm) and not isinstance(module, RankSyncBatchNorm):
        out = RankSyncBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            device=module.running_mean.device if module.running_mean is not None else None,
        )
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert(child))
    return out
