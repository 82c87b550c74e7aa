import re
from pathlib import Path

import pytest

from fer_bench.errors import ConfigError, UnknownNameError
from fer_bench.plan import Benchmark, TrainConfig, expand, find_benchmark, load_benchmark


def test_linear_collapses_prompt_axis_and_ids_are_stable():
    b = Benchmark(backbones=["fer_cnn", "timm:resnet18@none"],
                  prompts=["classnames", "clip_fer2013"],
                  heads=["lasted", "linear"], seeds=[0, 1])
    cells = expand(b)
    # 2 backbones x (2 prompts lasted + 1 linear) x 2 seeds
    assert len(cells) == 12
    assert all(c.prompts is None and c.text_encoder is None for c in cells if c.head == "linear")
    ids = [c.cell_id for c in cells]
    assert len(set(ids)) == len(ids)
    assert ids == [c.cell_id for c in expand(b)]  # stable across calls
    b2 = Benchmark(backbones=b.backbones, prompts=b.prompts, heads=b.heads, seeds=b.seeds,
                   train=TrainConfig(epochs=9))
    assert not set(ids) & {c.cell_id for c in expand(b2)}  # config is part of the id


def test_demo_benchmark_is_found_and_valid():
    bench = load_benchmark(find_benchmark("demo"))
    assert len(bench.backbones) >= 2 and set(bench.heads) == {"lasted", "linear"}
    assert len(bench.prompts) >= 2
    assert bench.train.pretrained is False


@pytest.mark.parametrize("text,needle", [
    ('[train]\nepochz = 3\n', "train.epochz"),
    ('[train]\nepochs = "three"\n', "train.epochs: expected an integer, got 'three'"),
    ('[train]\nlr = "abc"\n', "train.lr: expected a number, got 'abc'"),
    ('[train]\nlr = 0\n', "train.lr: expected a number > 0, got 0"),
    ('[train]\noptimizer = "sgdd"\n', "train.optimizer: expected one of 'adamw', 'adam' or 'sgd'"),
    ('[train]\ndrop_last = 1\n', "train.drop_last: expected true or false, got 1"),
    ('[train]\nprobe_weight_decays = [0, -1]\n', "train.probe_weight_decays[1]: expected a number"),
    ('[axes]\nseeds = [0, "1"]\n', "axes.seeds[1]: expected an integer, got '1'"),
    ('[axes]\nregimes = ["full", "lora"]\n', "axes.regimes[1]: regime 'lora': LoRA needs its rank"),
    ('[axes]\nbackbones = []\n', "axes.backbones is empty"),
    ('[axes]\nbackbone = ["fer_cnn"]\n', "unknown axis backbone"),
    ('nmae = "x"\n', "unknown top-level key"),
    ('[axes\n', "invalid TOML"),
    ('[train]\nregime = "everything"\n', "train.regime: regime 'everything'"),
])
def test_bad_benchmark_files_name_the_key_and_file(tmp_path: Path, text, needle):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_benchmark(f)
    assert needle in str(e.value) and str(f) in str(e.value)


@pytest.mark.parametrize("text,needle", [
    ('[train]\nepochz = 3\n', "unknown key train.epochz (did you mean 'epochs'?)"),
    ('nmae = "x"\n', "unknown top-level key nmae (did you mean 'name'?)"),
    ('[axes]\nbackbone = ["fer_cnn"]\n', "unknown axis backbone (did you mean 'backbones'?)"),
    ('[[overrides]]\nhead = "x"\ntrain = { lrr = 1 }\n',
     "unknown key overrides[0].train.lrr (did you mean 'lr'?)"),
    ('[eval]\nkeep = true\n', "unknown key eval.keep (expected: cross_datasets, keep_checkpoints)"),
])
def test_unknown_keys_suggest_the_closest_known_key(tmp_path: Path, text, needle):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_benchmark(f)
    assert str(e.value) == f"{f}: {needle}"


def test_every_wrong_key_is_reported_once_per_line(tmp_path: Path):
    f = tmp_path / "bad.toml"
    f.write_text('[train]\nlr = "abc"\nbatch_size = 0\n')
    with pytest.raises(ConfigError) as e:
        load_benchmark(f)
    assert str(e.value).splitlines() == [f"{f}: train.batch_size: expected an integer >= 1, got 0",
                                         f"{f}: train.lr: expected a number, got 'abc'"]


def test_validated_values_keep_cell_ids(tmp_path: Path):
    """An int for a float becomes a float, a list a tuple (as before pydantic): same ids."""
    bench = _bench(tmp_path, '[axes]\nbackbones = ["fer_cnn"]\nheads = ["linear"]\n'
                             '[train]\nlr = 1\nprobe_weight_decays = [0, 0.1]\n')
    assert bench.train == TrainConfig(lr=1.0, probe_weight_decays=(0, 0.1))
    assert isinstance(bench.train.lr, float) and isinstance(bench.train.probe_weight_decays[0], int)
    (cell,) = expand(bench)
    plain = Benchmark(backbones=["fer_cnn"], heads=["linear"],
                      train=TrainConfig(lr=1.0, probe_weight_decays=(0, 0.1)))
    assert cell.cell_id == expand(plain)[0].cell_id


def test_unknown_head_suggests_closest():
    with pytest.raises(UnknownNameError, match="lasted"):
        expand(Benchmark(backbones=["fer_cnn"], heads=["lasteed"]))


def _bench(tmp_path: Path, text: str):
    f = tmp_path / "b.toml"
    f.write_text(text)
    return load_benchmark(f)


def test_overrides_skip_and_globs(tmp_path: Path):
    bench = _bench(tmp_path, """
[axes]
backbones = ["clip_rn50", "clip_rn50x?", "clip_rn50x??", "fer_cnn"]
heads = ["lasted", "linear"]
prompts = ["classnames", "facs"]
[train]
lr = 1e-3
[[overrides]]
backbone = "clip_*"
train = { lr = 1e-5, batch_size = 16 }
[[overrides]]
head = "linear"
train = { epochs = 2 }
[[skip]]
backbone = "clip_rn50x*"
head = "linear"
[[skip]]
prompts = "facs"
backbone = "fer_cnn"
""")
    cells = expand(bench)
    names = {c.backbone for c in cells}
    assert names == {"clip_rn50", "clip_rn50x4", "clip_rn50x16", "clip_rn50x64", "fer_cnn"}
    for c in cells:
        assert c.train.lr == (1e-5 if c.backbone.startswith("clip_") else 1e-3)
        assert c.train.epochs == (2 if c.head == "linear" else TrainConfig().epochs)
        assert not (c.backbone.startswith("clip_rn50x") and c.head == "linear")
        assert not (c.backbone == "fer_cnn" and c.prompts == "facs")
    # 4 clip x 2 prompts lasted + clip_rn50 linear + fer_cnn (classnames lasted + linear)
    assert len(cells) == 8 + 1 + 2


@pytest.mark.parametrize("text,needle", [
    ('[[overrides]]\nbackbone = "x"\n', "needs a non-empty 'train' table"),
    ('[[overrides]]\nbackbone = "x"\ntrain = { lrr = 1 }\n', "train.lrr"),
    ('[[skip]]\nbackbon = "x"\n', "unknown key skip[0].backbon (did you mean 'backbone'?)"),
    ('[[skip]]\nbackbone = 3\n', "skip[0].backbone: expected a string, got 3"),
    ('[[skip]]\n', "skip[0]: needs at least one of backbone"),
    ('[eval]\ncross_datasets = "synfer"\n', "eval.cross_datasets"),
])
def test_bad_overrides_and_skips(tmp_path: Path, text, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        _bench(tmp_path, text)


def test_glob_matching_nothing_is_an_error():
    with pytest.raises(ConfigError, match="matches nothing"):
        expand(Benchmark(backbones=["nonexistent_*"]))


def test_cross_datasets_are_part_of_the_cell(tmp_path: Path):
    bench = _bench(tmp_path, """
[axes]
backbones = ["fer_cnn"]
heads = ["linear"]
datasets = ["synfer:n=700"]
[eval]
cross_datasets = ["synfer:n=700,seed=1"]
""")
    (cell,) = expand(bench)
    assert cell.cross == ("synfer:n=700,seed=1",)
    assert cell.config()["cross"] == ["synfer:n=700,seed=1"]
    plain = expand(Benchmark(backbones=["fer_cnn"], heads=["linear"], datasets=["synfer:n=700"]))
    assert "cross" not in plain[0].config() and plain[0].cell_id != cell.cell_id
