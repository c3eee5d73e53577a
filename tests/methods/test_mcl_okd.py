"""MCL-OKD: KD into the last branch only, the memory bank (update rule, negatives, resume), NCE."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from analysis.config import ModelConfig
from analysis.errors import CollabError
from analysis.methods import create_method
from analysis.methods.contrastive import distinct_draws
from analysis.methods.mcl_okd import (
    MCLOKDOptions,
    MemoryBank,
    bank_nce,
    batch_infonce,
    last_branch_kd,
)

SHAPE = SimpleNamespace(num_classes=4, in_chans=1, mean=(0.5,), std=(0.25,))


def _setup(**options):
    torch.manual_seed(0)
    method = create_method(MCLOKDOptions(**options))
    return method, method.build_model(ModelConfig(arch="test_resnet", peers=4), SHAPE)


def _params(model, prefix):
    return [p for n, p in model.named_parameters() if n.startswith(prefix)]


def test_model_shares_stem_and_layer1_and_embeds_each_branch():
    _, model = _setup()
    assert {"trunk.conv1", "trunk.layer1", "branches.3.layer2", "embed.3"} <= set(
        dict(model.named_modules())
    )
    model.eval()
    x = torch.rand(5, 1, 32, 32)
    out = model(x)
    emb = out.extras["embeddings"]
    assert emb.shape == (4, 5, 128) and torch.allclose(emb.norm(dim=-1), torch.ones(4, 5))
    for k in range(4):
        torch.testing.assert_close(model.peer(k)(x), out.peer_logits[k])


def test_kd_known_answer_and_it_only_moves_the_last_branch():
    z = torch.randn(4, 6, 5)
    ref = (
        F.kl_div((z[3] / 3).log_softmax(-1), (z.mean(0) / 3).softmax(-1), reduction="batchmean") * 9
    )
    torch.testing.assert_close(last_branch_kd(z, temperature=3.0), ref)
    _, model = _setup()
    out = model(torch.rand(6, 1, 32, 32))
    last_branch_kd(out.peer_logits, temperature=3.0).backward()
    for k in range(3):
        assert all(p.grad is None or not p.grad.any() for p in _params(model, f"branches.{k}.")), k
    assert all(p.grad is not None and p.grad.any() for p in _params(model, "branches.3.fc"))


def test_bank_update_is_momentum_then_renormalise():
    bank = MemoryBank(branches=2, dim=2, momentum=0.5)
    bank.ensure(torch.tensor([2]))
    bank.vectors[:, 1] = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    before = bank.vectors.clone()
    bank.update(torch.tensor([1]), torch.tensor([[[0.0, 1.0]], [[0.0, 1.0]]]))
    torch.testing.assert_close(bank.vectors[0, 1], torch.tensor([1.0, 1.0]) / math.sqrt(2))
    torch.testing.assert_close(bank.vectors[1, 1], torch.tensor([0.0, 1.0]))  # (0, 1.5) normalised
    assert torch.equal(bank.vectors[:, [0, 2]], before[:, [0, 2]])


def test_seen_rule_draws_other_known_classes_and_shrinks_when_few():
    """The earlier rule (``negatives_from: seen``): with replacement, seen rows only."""
    torch.manual_seed(0)
    bank = MemoryBank(branches=1, dim=4, momentum=0.5)
    index = torch.tensor([0, 1, 2, 5, 7])
    bank.ensure(index)
    bank.record_labels(index, torch.tensor([0, 0, 1, 2, 2]))
    target = torch.tensor([0, 2])
    neg = bank.sample_negatives(target, 256, rule="seen")
    assert neg.shape == (2, 3)  # sample 0 has 3 other-class rows known, sample 1 has 3
    assert set(neg[0].tolist()) <= {2, 5, 7} and set(neg[1].tolist()) <= {0, 1, 2}
    bank.ensure(torch.tensor([40]))
    many = torch.arange(10, 41)
    bank.record_labels(many, many % 3)
    # now 12 known rows per class: 24 other-class rows for everyone
    assert bank.sample_negatives(torch.tensor([1, 2, 0]), 256, rule="seen").shape == (3, 24)
    neg = torch.cat(
        [bank.sample_negatives(torch.tensor([1, 2, 0]), 20, rule="seen") for _ in range(20)], dim=1
    )
    assert neg.shape == (3, 400)
    assert (bank.labels[neg] != torch.tensor([1, 2, 0])[:, None]).all() and (
        bank.labels[neg] >= 0
    ).all()
    assert set(neg[0].tolist()) == set(
        torch.nonzero((bank.labels >= 0) & (bank.labels != 1)).squeeze(1).tolist()
    )
    one_class = MemoryBank(branches=1, dim=4, momentum=0.5)
    one_class.ensure(torch.tensor([3]))
    one_class.record_labels(torch.tensor([0, 3]), torch.tensor([1, 1]))
    assert one_class.sample_negatives(torch.tensor([1]), 256, rule="seen").shape == (1, 0)


def test_authors_rule_draws_distinct_rows_of_other_classes_from_the_whole_bank():
    """winycg/MCL-OKD dataset/cifar100.py: np.random.choice(cls_negative[target], k,
    replace=k > len(cls_negative[target])) -- distinct rows of every other class."""
    assert MCLOKDOptions().negatives_from == "all"
    torch.manual_seed(0)
    bank = MemoryBank(branches=1, dim=4, momentum=0.5, size=60)
    seen = torch.arange(0, 60, 2)  # even rows seen (classes 0, 1, 2), odd rows not yet written
    bank.ensure(seen)
    bank.record_labels(seen, seen % 3)
    target = torch.tensor([0, 1, 2, 0])
    draws = [bank.sample_negatives(target, 40) for _ in range(50)]
    for neg in draws:
        assert neg.shape == (4, 40)
        assert all(len(set(row)) == 40 for row in neg.tolist())  # no duplicate in one draw
        assert (bank.labels[neg] != target[:, None]).all()  # never a row of the own class
    # every candidate turns up: other seen classes and the unseen rows alike (50 = 60 - 10)
    pool = torch.cat(draws, dim=1)
    candidates = torch.nonzero(bank.labels != 0).squeeze(1).tolist()
    assert len(candidates) == 50 and set(pool[0].tolist()) == set(candidates)
    # fewer candidates than K: with replacement, still only candidates (their replace=True)
    few = bank.sample_negatives(target, 64)
    assert few.shape == (4, 64) and (bank.labels[few] != target[:, None]).all()
    one_class = MemoryBank(branches=1, dim=4, momentum=0.5)
    one_class.ensure(torch.tensor([3]))
    one_class.record_labels(torch.tensor([0, 1, 2, 3]), torch.tensor([1, 1, 1, 1]))
    assert one_class.sample_negatives(torch.tensor([1]), 8).shape == (1, 0)
    with pytest.raises(CollabError, match="negatives rule"):
        bank.sample_negatives(target, 4, rule="some")


def test_distinct_draws_are_distinct_and_in_range_in_any_chunking():
    torch.manual_seed(0)
    limits = torch.tensor([5, 300, 1000, 17, 1000])
    for max_elements in (1 << 24, 1000, 1):
        u = distinct_draws(limits, 10, max_elements=max_elements)
        assert u.shape == (5, 10) and (u >= 0).all() and (u < limits[:, None]).all()
        assert all(len(set(row)) == 10 for row in u[1:].tolist())  # row 0: 5 < 10, replaced
    counts = torch.bincount(distinct_draws(torch.full((4000,), 10), 3).flatten(), minlength=10)
    assert counts.min() > 1050 and counts.max() < 1350  # uniform: 1200 each


def test_gather_copies_the_rows_batch_major_into_one_reused_buffer():
    bank = MemoryBank(branches=3, dim=8, momentum=0.5)
    bank.ensure(torch.arange(50))
    pointers = []
    for seed in (0, 1):
        rows = torch.randint(0, 50, (4, 6), generator=torch.Generator().manual_seed(seed))
        got = bank.gather(rows)
        expected = bank.vectors.permute(1, 0, 2)[rows].permute(0, 2, 1, 3)  # (B, K, S, D)
        assert got.shape == (4, 3, 6, 8) and torch.equal(got, expected)
        pointers.append(got.data_ptr())
    assert pointers[0] == pointers[1]  # the second call wrote into the first call's buffer
    emb = F.normalize(torch.randn(3, 4, 8), dim=-1).requires_grad_()
    loss = bank_nce(bank.gather(rows), emb, tau=0.1, batch_major=True)
    bank.gather(rows.flip(0))  # overwrites the rows the first loss's graph holds
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_bank_nce_matches_the_reference_formula():
    torch.manual_seed(1)
    rows = F.normalize(torch.randn(3, 4, 6, 8), dim=-1)
    emb = F.normalize(torch.randn(3, 4, 8), dim=-1)
    n_data, tau, m = 1000, 0.1, 5
    expected = 0.0
    for i in range(3):
        for j in range(3):
            if i == j:
                continue
            x = torch.exp((rows[i] @ emb[j][:, :, None]).squeeze(-1) / tau)  # (B, 1+m)
            x = x / (x.mean() * n_data)
            pn = m / n_data
            log_d1 = torch.log(x[:, 0] / (x[:, 0] + pn))
            log_d0 = torch.log(pn / (x[:, 1:] + pn))
            expected = expected - (log_d1.sum() + log_d0.sum()) / 4
    torch.testing.assert_close(bank_nce(rows, emb, tau=tau), expected)


def test_batch_infonce_known_answer():
    emb = F.normalize(torch.randn(2, 3, 4), dim=-1)
    target = torch.tensor([0, 1, 0])
    got = batch_infonce(emb, target, tau=0.5)
    expected = 0.0
    for i, j in ((0, 1), (1, 0)):
        s = emb[j] @ emb[i].T / 0.5
        for b in range(3):
            keep = [c for c in range(3) if c == b or target[c] != target[b]]
            expected = expected - (s[b, b] - torch.logsumexp(s[b, keep], 0)) / 3
    torch.testing.assert_close(got, expected)


def test_training_loss_updates_the_bank_and_evaluation_leaves_it_alone():
    method, model = _setup(negatives=8)
    x, y = torch.rand(8, 1, 32, 32), torch.arange(8) % 4
    out = model(x)
    total, parts = method.loss(out, y, epoch=0.0, index=torch.arange(10, 18))
    assert method.bank.vectors.shape == (4, 18, 128) and (method.bank.labels[10:] == y).all()
    assert (method.bank.labels[:10] == -1).all() and parts["contrast"] > 0
    torch.testing.assert_close(total, parts["ce"].sum() + parts["kd"] + 0.025 * parts["contrast"])
    total.backward()
    assert all(p.grad is not None and p.grad.any() for p in _params(model, "embed."))
    before = method.bank.vectors.clone()
    with torch.no_grad():
        _, parts = method.loss(model(x), y, epoch=1.0)
    assert torch.equal(method.bank.vectors, before) and torch.isfinite(parts["contrast"])


def test_bank_grows_lazily_or_refuses_past_bank_size():
    method, model = _setup()
    x, y = torch.rand(4, 1, 32, 32), torch.arange(4)
    method.loss(model(x), y, epoch=0.0, index=torch.tensor([0, 1, 2, 3]))
    first = method.bank.vectors.clone()
    method.loss(model(x), y, epoch=0.0, index=torch.tensor([20, 21, 22, 23]))
    assert method.bank.vectors.shape[1] == 24 and torch.equal(method.bank.vectors[:, :4], first)
    fixed, model = _setup(bank_size=10)
    with pytest.raises(CollabError, match="bank_size"):
        fixed.loss(model(x), y, epoch=0.0, index=torch.tensor([7, 8, 9, 10]))


def test_state_dict_round_trip_resumes_identically():
    method, model = _setup(negatives=4)
    x, y = torch.rand(8, 1, 32, 32), torch.arange(8) % 4
    with torch.no_grad():
        out = model(x)
    method.loss(out, y, epoch=0.0, index=torch.arange(8))
    state = {k: v.clone() for k, v in method.state_dict().items()}
    assert set(state) == {"bank", "labels"}
    resumed = create_method(MCLOKDOptions(negatives=4))  # no build_model: as after a restart
    resumed.load_state_dict(state)
    assert torch.equal(resumed.state_dict()["bank"], state["bank"])
    results = []
    for m in (method, resumed):
        torch.manual_seed(5)
        results.append(
            (
                m.loss(out, y, epoch=1.0, index=torch.arange(8))[1]["contrast"],
                m.state_dict()["bank"],
            )
        )
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    with pytest.raises(CollabError, match="memory bank"):
        create_method(MCLOKDOptions(embed_dim=64)).load_state_dict(state)
