"""The batch-major bank gather and NCE give the branch-major numbers bit for bit."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from analysis.methods.contrastive import MemoryBank, bank_nce


def test_gather_is_the_batch_major_bank_rows():
    bank = MemoryBank(branches=3, dim=8, momentum=0.5)
    bank.ensure(torch.tensor([99]))
    rows = torch.randint(0, 100, (5, 7))
    expected = bank.vectors[:, rows].permute(1, 0, 2, 3)
    got = bank.gather(rows)
    assert got.shape == (5, 3, 7, 8) and got.is_contiguous()
    assert torch.equal(got, expected)


def test_batch_major_nce_is_bit_identical_in_value_and_gradient():
    torch.manual_seed(3)
    bank = MemoryBank(branches=4, dim=128, momentum=0.5)
    bank.ensure(torch.tensor([4999]))
    rows = torch.randint(0, 5000, (64, 257))
    emb = F.normalize(torch.randn(4, 64, 128), dim=-1).requires_grad_()
    old = bank_nce(bank.vectors[:, rows], emb, tau=0.1)
    new = bank_nce(bank.gather(rows), emb, tau=0.1, batch_major=True)
    (g_old,) = torch.autograd.grad(old, emb)
    (g_new,) = torch.autograd.grad(new, emb)
    assert torch.equal(old, new)
    assert torch.equal(g_old, g_new)
