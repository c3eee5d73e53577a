"""Learning class-wise channel gates on a frozen network (the core of the dissection probe).

See :mod:`analysis.probes.dissection` for what the gates mean and how they are used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from analysis.errors import CollabError
from analysis.models.surgery import scaled_channels


def _batches(rows: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each class's batch: its own images and as many others (seeded), as (M,) image indices and
    (M,) class positions whose gates apply. ``rows`` (N,): each image's class position, or -1
    for an image of a class not dissected (used only as another class's contrast)."""
    gen = torch.Generator().manual_seed(seed + 1)
    images, owners = [], []
    for r in range(n):
        own = (rows == r).nonzero().flatten()
        other = (rows != r).nonzero().flatten()
        other = other[torch.randperm(len(other), generator=gen)[: len(own)]]
        images.append(torch.cat([own, other]))
        owners.append(torch.full((len(own) + len(other),), r))
    return torch.cat(images), torch.cat(owners)


def learn_gates(peer, net, units, x, rows, classes: list[int], options) -> dict[str, torch.Tensor]:
    """Per unit, (n, C_u) gates keeping ``peer``'s output on each class's images (module doc)."""
    n = len(classes)
    if options.objective not in ("class_logit", "kl"):
        raise CollabError(f"objective {options.objective!r}: use 'class_logit' or 'kl'")
    if options.objective == "class_logit":  # c's logit on c's images and as many others
        idx, owner = _batches(rows.cpu(), n, options.seed)
        idx, owner = idx.to(x.device), owner.to(x.device)
    else:  # the whole output on c's images
        idx = (rows >= 0).nonzero().flatten()
        owner = rows[idx]
    chunks = [slice(i, i + options.batch_size) for i in range(0, len(idx), options.batch_size)]
    with torch.no_grad():  # the ungated outputs, in minibatches that bound the memory
        target = torch.cat([peer(x[idx[c]]) for c in chunks])
    logit = torch.as_tensor(classes, device=x.device)[owner]
    gates = {u.name: torch.ones(n, u.width, device=x.device, requires_grad=True) for u in units}
    total = sum(u.width for u in units)
    counts = torch.bincount(owner, minlength=n).clamp(min=1)
    mine = target.gather(1, logit[:, None]).squeeze(1)
    spread = torch.zeros(n, device=x.device).index_add(0, owner, mine.pow(2)) / counts
    spread = spread - (torch.zeros(n, device=x.device).index_add(0, owner, mine) / counts) ** 2
    spread = spread.clamp(min=1e-6)  # the squared error is in units of the logit's variance
    opt = torch.optim.Adam(list(gates.values()), lr=options.lr)
    for _ in range(options.steps):
        # d(l1 * mean gate)/d gate, plus each minibatch's share of sum_c mean_{batch c} change
        grads = [torch.full_like(g, options.l1 / total) for g in gates.values()]
        for c in chunks:
            own = owner[c]
            with scaled_channels(net, units, {k: g[own] for k, g in gates.items()}):
                out = peer(x[idx[c]])
            if options.objective == "kl":
                logp, logq = F.log_softmax(out, dim=1), F.log_softmax(target[c], dim=1)
                change = F.kl_div(logp, logq, log_target=True, reduction="none").sum(1)
            else:
                change = (out.gather(1, logit[c, None]).squeeze(1) - mine[c]).pow(2) / spread[own]
            loss = (change / counts[own]).sum()
            for total_grad, grad in zip(grads, torch.autograd.grad(loss, list(gates.values()))):
                total_grad += grad
        for g, grad in zip(gates.values(), grads):
            g.grad = grad
        opt.step()
        with torch.no_grad():
            for g in gates.values():
                g.clamp_(0.0, 1.0)
    return {k: g.detach() for k, g in gates.items()}


def to_masks(gates: dict[str, torch.Tensor], threshold: float) -> dict[str, torch.Tensor]:
    """gate > threshold, keeping at least the strongest channel of every unit and class."""
    masks = {}
    for name, g in gates.items():
        m = g > threshold
        m[torch.arange(len(g)), g.argmax(1)] = True
        masks[name] = m
    return masks
