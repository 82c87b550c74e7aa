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
    assert len(bench.backbones) >= 3 and set(bench.heads) == {"lasted", "linear"}
    assert len(bench.prompts) >= 2
    assert bench.train.pretrained is False


@pytest.mark.parametrize("text,needle", [
    ('[train]\nepochz = 3\n', "train.epochz"),
    ('[train]\nepochs = "three"\n', "train.epochs must be int"),
    ('[axes]\nbackbones = []\n', "axes.backbones is empty"),
    ('[axes]\nbackbone = ["fer_cnn"]\n', "unknown axis backbone"),
    ('nmae = "x"\n', "unknown top-level key"),
    ('[axes\n', "invalid TOML"),
    ('[train]\nregime = "everything"\n', "train.regime must be one of"),
])
def test_bad_benchmark_files_name_the_key_and_file(tmp_path: Path, text, needle):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_benchmark(f)
    assert needle in str(e.value) and str(f) in str(e.value)


def test_unknown_head_suggests_closest():
    with pytest.raises(UnknownNameError, match="lasted"):
        expand(Benchmark(backbones=["fer_cnn"], heads=["lasteed"]))
