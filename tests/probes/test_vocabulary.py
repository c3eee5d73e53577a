"""DCL vocabulary and word co-occurrence: known answers first."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from analysis.errors import CollabError
from analysis.models import CollaborativeModel, create_model
from analysis.models.receptive_field import receptive_field
from analysis.probes.dcl_layers import dcl_layer_paths, dcl_receptive_field
from analysis.probes.dcl_words import VocabularyStats, composite_ids, decode_ids
from analysis.probes.hooks import hook_count
from analysis.probes.peer_words import peer_cooccurrence
from analysis.probes.shared_pass import run_pass
from analysis.probes.vocabulary import VocabularyConsumer, max_entropy_bits, probe_vocabulary
from analysis.probes.word_patches import crop_window
from analysis.probes.word_stats import WordHeap, pmi


def one_hot_responses(words: list[list[int]], m: int, strength: list[float]) -> torch.Tensor:
    """(K, 1, M, 1, P) responses whose argmax is ``words[k][p]`` with value ``strength[k]``."""
    k, p = len(words), len(words[0])
    out = torch.full((k, 1, m, 1, p), -1.0)
    for a in range(k):
        for j, w in enumerate(words[a]):
            out[a, 0, w, 0, j] = strength[a]
    return out


def test_hand_built_branch_responses_give_the_exact_tables():
    stats = VocabularyStats(branches=2, branch_width=3, top_n=2)
    stats.add(one_hot_responses([[0, 1, 2, 0], [1, 1, 0, 2]], 3, [2.0, 3.0]), torch.tensor([7]))
    expected = torch.zeros(3, 3, dtype=torch.int64)
    for a, b in [(0, 1), (1, 1), (2, 0), (0, 2)]:
        expected[a, b] += 1
    assert torch.equal(stats.counts[0], expected)
    assert torch.equal(stats.branch_counts, torch.tensor([[2, 1, 1], [1, 2, 1]]))
    ids, counts = stats.ranked_words()
    assert sorted(ids.tolist()) == [0 * 3 + 1, 0 * 3 + 2, 1 * 3 + 1, 2 * 3 + 0]
    assert counts.tolist() == [1, 1, 1, 1]
    # strength = ReLU(2) * ReLU(3), at sample 7, for every word
    scores, samples, positions = stats.heap.top(torch.tensor([1 * 3 + 1]))
    assert scores[0, 0] == 6.0 and math.isnan(scores[0, 1])
    assert samples[0].tolist() == [7, -1] and positions[0].tolist() == [1, -1]


def test_three_branches_give_pairwise_tables_and_ids_round_trip():
    words = [[0, 1, 1, 0, 2], [2, 2, 0, 0, 1], [1, 0, 0, 1, 1]]
    stats = VocabularyStats(branches=3, branch_width=3)
    stats.add(one_hot_responses(words, 3, [1.0, 1.0, 1.0]), torch.tensor([0]))
    assert stats.pairs == [[0, 1], [0, 2], [1, 2]]
    assert stats.counts.shape == (3, 3, 3) and (stats.counts.sum((1, 2)) == 5).all()
    assert stats.counts[1][0, 1] == 2 and stats.counts[2][0, 0] == 1  # (w0, w2) = (0, 1) twice
    w = torch.tensor(words)
    ids = composite_ids(w, 3)
    assert ids.tolist() == [0 * 9 + 2 * 3 + 1, 1 * 9 + 2 * 3 + 0, 9, 1, 2 * 9 + 3 + 1]
    assert torch.equal(decode_ids(ids, 3, 3), w.T)


def test_heap_keeps_the_strongest_firings_of_every_word_over_batches():
    gen = torch.Generator().manual_seed(0)
    heap, n = WordHeap(3), 3
    ids = torch.randint(0, 5, (300,), generator=gen)
    scores = torch.rand(300, generator=gen)
    for chunk in range(0, 300, 70):
        part = slice(chunk, chunk + 70)
        heap.add(
            ids[part],
            scores[part],
            torch.arange(300)[part],
            torch.zeros(300, dtype=torch.long)[part],
        )
    got, samples, _ = heap.top(torch.arange(6))
    for word in range(5):
        best = torch.sort(scores[ids == word], descending=True).values[:n]
        torch.testing.assert_close(got[word], best)
        assert torch.equal(scores[samples[word]], best)
    assert torch.isnan(got[5]).all() and (samples[5] == -1).all()  # never seen
    assert len(heap.ids) <= 5 * n


def test_pmi_of_independent_words_is_zero():
    exact = torch.outer(torch.tensor([10, 30, 60]), torch.tensor([5, 5, 10, 20]))
    torch.testing.assert_close(pmi(exact, smoothing=0.0), torch.zeros(3, 4, dtype=torch.float64))
    gen = torch.Generator().manual_seed(1)
    a, b = (
        torch.randint(0, 4, (200_000,), generator=gen),
        torch.randint(0, 4, (200_000,), generator=gen),
    )
    counts = torch.bincount(a * 4 + b, minlength=16).view(4, 4)
    assert pmi(counts).abs().max() < 0.05  # ~3.5 sd of a cell of 12,500
    dependent = torch.tensor([[10, 0], [0, 10]])
    table = pmi(dependent, smoothing=0.0)
    assert table[0, 0] == pytest.approx(1.0) and table[0, 1] == float("-inf")
    assert torch.isfinite(pmi(dependent)).all() and pmi(dependent)[0, 1] < 0


def _model(arch: str, **options) -> CollaborativeModel:
    torch.manual_seed(0)
    net = create_model(arch, num_classes=5, in_chans=1, **options)
    return CollaborativeModel([net], mean=(0.5,), std=(0.25,))


def _images(n: int, size: int) -> TensorDataset:
    gen = torch.Generator().manual_seed(2)
    return TensorDataset(
        torch.rand(n, 1, size, size, generator=gen), torch.zeros(n, dtype=torch.long)
    )


def test_counts_add_up_and_the_used_vocabulary_is_bounded():
    model = _model("dcl_resnet8", width=4).train()
    hooks = hook_count(model)
    vocab = probe_vocabulary(model, _images(20, 16), batch_size=8, num_words=4, top_n=3)
    assert hook_count(model) == hooks and model.training
    assert vocab.layer == "peers.0.layer3.0.dcl" and vocab.map_size == [4, 4]
    assert (vocab.branches, vocab.branch_width, vocab.vocabulary_size) == (2, 8, 64)
    assert vocab.num_samples == 20 and vocab.num_positions == 20 * 16
    assert int(vocab.counts.sum()) == vocab.num_positions == int(vocab.word_counts.sum())
    assert (vocab.branch_counts.sum(1) == vocab.num_positions).all()
    assert vocab.used_vocabulary == len(vocab.words) <= min(64, 20 * 16)
    assert 0 <= vocab.entropy_bits <= max_entropy_bits(vocab) + 1e-9
    assert (vocab.word_counts[:-1] >= vocab.word_counts[1:]).all()
    assert torch.equal(vocab.top_words, vocab.words[:4])
    assert vocab.patches.shape == (4, 3, 1, 17, 17)
    assert vocab.receptive_field == [17, 4, -8]


def test_receptive_field_of_dcl_layers_matches_the_module_chain():
    net = _model("dcl_resnet8", width=4).peers[0]
    chain = [net.conv1, net.layer1, net.layer2, net.layer3[0].dcl.branches[0]]
    assert dcl_receptive_field(net, "layer3.0.dcl") == receptive_field(chain)
    vgg = create_model("dcl_vgg8", num_classes=5, in_chans=1, width=8, dcl_stages="all")
    # earlier DCL modules count once (their K branches run side by side)
    assert dcl_receptive_field(vgg, "layer4.1").size == 54
    with pytest.raises(CollabError, match="not a DCL module"):
        dcl_receptive_field(vgg, "layer4")


def test_patches_are_the_receptive_field_crops_that_produce_the_scores():
    model = _model("dcl_vgg8", width=8, dcl_stages="1").eval()
    data = _images(6, 10)
    (layer,) = dcl_layer_paths(model, peer=0)[:1]
    vocab = probe_vocabulary(model, data, layer=layer, top_n=4, num_words=6, fill=0.0)
    assert vocab.receptive_field == [3, 1, -1]
    dcl = model.get_submodule(layer)
    checked = 0
    for t, j in zip(*torch.nonzero(vocab.top_samples >= 0, as_tuple=True)):
        image = data[int(vocab.top_samples[t, j])][0]
        row, col = vocab.top_positions[t, j].tolist()
        assert torch.equal(vocab.patches[t, j], crop_window(image, row - 1, col - 1, 3))
        x0, y0, x1, y1 = vocab.top_boxes[t, j].tolist()
        assert (x0, y0, x1, y1) == (
            max(col - 1, 0),
            max(row - 1, 0),
            min(col + 2, 10),
            min(row + 2, 10),
        )
        if 0 < row < 9 and 0 < col < 9:  # interior: the patch alone reproduces the firing
            z = (vocab.patches[t, j][None] - 0.5) / 0.25
            with torch.no_grad():
                resp = torch.stack([b(z)[0, :, 1, 1] for b in dcl.branches])  # (K, M)
            assert resp.argmax(1).tolist() == vocab.top_words[t].tolist()
            assert float(resp.max(1).values.relu().prod()) == pytest.approx(
                float(vocab.top_scores[t, j]), rel=1e-5
            )
            checked += 1
    assert checked > 5


def test_edge_windows_are_filled_outside_the_image():
    image = torch.arange(16.0).view(1, 4, 4)
    patch = crop_window(image, -1, 2, 3, fill=-5.0)
    assert patch[0, 0].tolist() == [-5.0] * 3
    assert patch[0, 1].tolist() == [2.0, 3.0, -5.0]


def test_consumer_shares_a_pass_and_rejects_non_dcl_layers():
    model = _model("dcl_resnet8", width=4)
    layer = dcl_layer_paths(model)[0]
    a, b = (
        VocabularyConsumer(model, layer, num_words=2),
        VocabularyConsumer(model, layer, num_words=3),
    )
    first, second = run_pass(model, _images(8, 16), [a, b], batch_size=4)
    assert torch.equal(first.counts, second.counts) and first.patches.numel() == 0
    with pytest.raises(CollabError, match="no DCL layer"):
        VocabularyConsumer(model, "peers.0.layer2")
    plain = CollaborativeModel(
        [create_model("test_cnn", num_classes=3, in_chans=1)], mean=(0.5,), std=(0.25,)
    )
    with pytest.raises(CollabError, match="has no DCL layer"):
        probe_vocabulary(plain, _images(4, 16))


def test_peer_cooccurrence_of_a_layer_with_itself_is_diagonal():
    torch.manual_seed(0)
    peers = [create_model("test_cnn", num_classes=3, in_chans=1, width=4) for _ in range(2)]
    model = CollaborativeModel(peers, mean=(0.5,), std=(0.25,))
    data = _images(10, 16)
    same = peer_cooccurrence(model, data, layers=["peers.0.layer2", "peers.0.layer2"])
    assert same.num_positions == 10 * 4 * 4 == int(same.counts.sum())
    assert same.counts.shape == (8, 8) and torch.equal(
        same.counts, torch.diag(same.counts.diagonal())
    )
    assert same.mutual_information == pytest.approx(same.entropy_bits[0])
    mixed = peer_cooccurrence(model, data, layers=["peers.0.layer1", "peers.1.layer2"])
    assert mixed.counts.shape == (4, 8) and mixed.map_size == [4, 4]
    assert mixed.resampled == [True, False] and mixed.num_positions == 160
    default = peer_cooccurrence(model, data)
    assert default.layers == ["peers.0.layer2", "peers.1.layer2"] and default.resampled == [
        False,
        False,
    ]


def test_results_survive_the_probe_cache(tmp_path):
    from analysis.probes.cache import load_result, save_result

    vocab = probe_vocabulary(_model("dcl_resnet8", width=4), _images(6, 16), num_words=2, top_n=2)
    save_result(tmp_path / "v.safetensors", vocab)
    back = load_result(tmp_path / "v.safetensors", type(vocab))
    assert back.pairs == vocab.pairs and back.receptive_field == vocab.receptive_field
    assert torch.equal(back.patches, vocab.patches) and torch.equal(back.counts, vocab.counts)
    assert torch.equal(back.top_scores.isnan(), vocab.top_scores.isnan())
