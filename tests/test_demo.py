"""The demo's promise, on a smaller SynFER: with benchmarks/demo.toml's training settings every
image encoder learns (none sits at the majority class) and disgust is recognised. A change to
the demo file, the engine or SynFER that breaks this fails here, not in a user's first run."""

from dataclasses import replace

import numpy as np
import pytest

from fer_bench.classes import CANONICAL
from fer_bench.plan import expand, find_benchmark, load_benchmark

SMALL = "synfer:n=3000,test_n=700"


@pytest.fixture(scope="module")
def demo_results(tmp_path_factory) -> list:
    """One cell per encoder (the demo's linear rows plus fer_cnn's lasted row), as the demo
    trains them but on SMALL."""
    from fer_bench.results.rows import load_results
    from fer_bench.run import run_plan

    bench = load_benchmark(find_benchmark("demo"))
    bench.datasets = [SMALL]
    cells = [c for c in expand(bench)
             if c.head == "linear" or (c.backbone == "fer_cnn" and c.prompts == bench.prompts[0])]
    assert {c.backbone for c in cells} == set(bench.backbones)
    out = tmp_path_factory.mktemp("demo_small")
    summary = run_plan([replace(c, train=replace(c.train, device="cpu")) for c in cells], out)
    assert not summary.failed, summary.failed
    results, _ = load_results([out])
    return results


def test_every_encoder_leaves_the_majority_class(demo_results):
    for r in demo_results:
        m = r.metrics
        conf = np.asarray(m["confusion"])
        predicted = int((conf.sum(0) > 0).sum())
        label = f"{r.backbone}/{r.head}: {m}"
        assert predicted >= 4, label                      # not one or two classes
        assert m["balanced_accuracy"] > 0.30, label       # chance is 1/7
        assert m["accuracy"] > conf.sum(1).max() / conf.sum() + 0.02, label  # beats majority


def test_disgust_is_recognised_somewhere(demo_results):
    d = CANONICAL.index("disgust")
    hits = [np.asarray(r.metrics["confusion"])[d, d] for r in demo_results]
    assert max(hits) > 0, "no demo encoder recognised a single disgust test image"


def test_demo_file_says_fp32_and_balances_classes():
    bench = load_benchmark(find_benchmark("demo"))
    assert bench.train.amp == "off"  # the same figures on every CPU
    assert bench.train.balance != "none" or bench.train.logit_adjust > 0
