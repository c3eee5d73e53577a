"""The probe contract: the registries, one call shape, eval_mode, and the cached entry point."""

import dataclasses
import json
import shutil

import pytest
import torch
from torch import nn

import analysis
from analysis.errors import CollabError
from analysis.probes import (
    MEASURES,
    NEEDS,
    PROBES,
    DiversityOptions,
    compute,
    eval_mode,
    probe_diversity,
    run_suite,
    spec,
)
from analysis.probes import contract as contract_module
from analysis.probes.contract import READS
from analysis.registry import Registry


def test_registry_keeps_order_metadata_and_refuses_duplicates():
    things = Registry("thing")

    @things.register("b", colour="blue")
    def b():
        return 2

    things.add("a", 1)
    assert list(things) == ["b", "a"] and things.list() == ["a", "b"]
    assert things.meta("b")["colour"] == "blue" and dict(things.meta("a")) == {}
    assert things["a"] == 1 and things.create("b") == 2 and things.items() == [("b", b), ("a", 1)]
    assert things.get("c", None) is None
    with pytest.raises(CollabError, match="unknown thing 'c'; choose one of: a, b"):
        things.get("c")
    with pytest.raises(ValueError, match="already registered"):
        things.add("a", 3)
    with pytest.raises(TypeError):
        things.meta("b")["colour"] = "red"  # read-only


def test_eval_mode_restores_every_module_even_on_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(), nn.BatchNorm1d(2))
    model[2].eval()  # a frozen batch norm inside a training model
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model) as m:
        assert not any(x.training for x in m.modules())
        raise RuntimeError("boom")
    assert [x.training for x in model.modules()] == [True, True, True, False]


@pytest.mark.parametrize("name", PROBES.list())
def test_every_probe_states_its_contract(name):
    s = spec(name)
    assert s.reads in READS and all(need in NEEDS for need in s.needs)
    assert dataclasses.is_dataclass(s.result) and s.about
    options = s.options()  # every option has a default
    json.dumps(s.cache_args(options, split="test"))  # the cache key is plain JSON
    assert (s.consumer is not None) == (s.reads == "activations")


def test_measures_registry_computes_each_matrix():
    logits, labels = torch.randn(3, 20, 4), torch.randint(0, 4, (20,))
    preds = analysis.probes.Predictions(logits, logits.mean(0), labels)
    for name, measure in MEASURES.items():
        assert measure(preds).shape == (3, 3), name


def test_registered_probe_and_wrapper_agree(tiny_run):
    run = analysis.load_run(tiny_run)
    data = run.dataset("test")
    assert spec("diversity").probe is probe_diversity
    a = probe_diversity(run.model, data, options=DiversityOptions(limit=40, batch_size=16))
    b = probe_diversity(run.model, data, limit=40, batch_size=16)
    assert a.num_samples == 40 and torch.equal(a.matrix("kappa"), b.matrix("kappa"))
    with pytest.raises(TypeError, match="not both"):
        probe_diversity(run.model, data, options=DiversityOptions(), limit=3)


def test_compute_shares_the_suite_cache(tiny_run, tmp_path, monkeypatch):
    shutil.copytree(tiny_run, tmp_path / "run")
    run = analysis.load_run(tmp_path / "run")
    suite = run_suite(run, probes=["cka", "kernels"], limit=32)

    def no_pass(*args, **kwargs):
        raise AssertionError("compute should have read the cache")

    monkeypatch.setattr(contract_module, "run_pass", no_pass)
    cka = compute(run, "cka", limit=32)
    assert torch.equal(cka.matrix, suite["cka"].matrix)
    assert torch.equal(compute(run, "kernels").matched, suite["kernels"].matched)
    with pytest.raises(AssertionError, match="read the cache"):
        compute(run, "cka", limit=32, pool=True)  # other options, other key


def test_compute_names_unknown_options_and_unmet_needs(tiny_run):
    run = analysis.load_run(tiny_run)
    with pytest.raises(CollabError, match="probe 'cka' has no option 'pooled'; its options are"):
        compute(run, "cka", pooled=True)
    with pytest.raises(CollabError, match="'vocabulary' does not apply to .*DCL layers"):
        compute(run, "vocabulary")
    with pytest.raises(CollabError, match="unknown probe 'ckaa'"):
        compute(run, "ckaa")
