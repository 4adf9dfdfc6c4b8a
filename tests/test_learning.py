"""The README's sample run learns (about 3 minutes on 2 cores)."""

import json

import pytest

from conftest import run_script

pytestmark = pytest.mark.slow


def test_sample_run_learns_to_three_times_chance(tmp_path):
    trained = run_script("train.py", "-scratch", "--sample", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    tested = run_script("test.py", "--sample", "--json", tmp_path / "results.json", cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    chance = 1 / len(json.loads((tmp_path / "ckpt-alexnet" / "config.json").read_text())["classes"])
    assert results["images"] == 100
    assert results["top1"] >= 3 * chance, results
