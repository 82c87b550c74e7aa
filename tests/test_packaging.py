"""Cards, prompt sets and benchmarks are found when fer-bench is installed as a wheel, where the
repository's top-level folders do not exist (pyproject force-includes them as fer_bench/_data)."""

import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("backbones", "prompts", "benchmarks")


def test_wheel_layout_finds_every_data_file(tmp_path: Path):
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert include == {k: f"fer_bench/_data/{k}" for k in KINDS}
    # lay the package out as the wheel does, away from the checkout
    site = tmp_path / "site"
    shutil.copytree(ROOT / "fer_bench", site / "fer_bench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for kind in KINDS:
        shutil.copytree(ROOT / kind, site / include[kind])
    code = ("import fer_bench.resources as r, json; print(json.dumps({k: sorted(r.data_files(k))"
            f" for k in {KINDS!r}}})); print(r.search_dirs('prompts')[0])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    import json

    found, first_dir = out.stdout.splitlines()
    found = json.loads(found)
    for kind in KINDS:
        expected = sorted(p.stem for p in (ROOT / kind).glob("*.toml"))
        assert found[kind] == expected and expected
    assert first_dir.startswith(str(site))
