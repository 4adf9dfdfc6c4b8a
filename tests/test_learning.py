"""The README's sample run learns (about 3 minutes on 2 cores), and fine-tuning it onto new classes learns fast."""

import json

import numpy as np
import pytest
from conftest import flags, run_main, run_script, write_classes

import data_reader

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """The README's quick start: train.py -scratch --sample, then test.py --sample."""
    work = tmp_path_factory.mktemp("sample-run")
    trained = run_script("train.py", "-scratch", "--sample", cwd=work)
    assert trained.returncode == 0, trained.stderr
    tested = run_script("test.py", "--sample", "--json", work / "results.json", cwd=work)
    assert tested.returncode == 0, tested.stderr
    return work


def test_sample_run_learns_to_three_times_chance(sample_run):
    results = json.loads((sample_run / "results.json").read_text())
    chance = 1 / len(json.loads((sample_run / "ckpt-alexnet" / "config.json").read_text())["classes"])
    assert results["images"] == 100
    assert results["top1"] >= 3 * chance, results


def test_fine_tuning_the_sample_run_onto_three_new_classes_learns_within_a_minute(sample_run, tmp_path):
    photos = write_classes(tmp_path / "photos", {"one": 30, "two": 30, "three": 30}, np.random.default_rng(7))
    options = flags(data_dir=photos, ckpt_dir=tmp_path / "ft", log_dir=tmp_path / "logs")
    tuned = run_script("train.py", "-scratch", *options, *flags(init_from=sample_run / "ckpt-alexnet", epochs=5))
    assert tuned.returncode == 0, tuned.stderr
    tested = run_main("test.py", *flags(data_dir=photos, ckpt_dir=tmp_path / "ft", json=tmp_path / "r.json"))
    assert tested.returncode == 0, tested.stderr
    results = json.loads((tmp_path / "r.json").read_text())
    held_out = data_reader.read_split(str(photos), data_reader.load_classes(str(photos)), "val")  # by name, 10%
    assert results["images"] == held_out.num_images > 0 and results["k"] == 3  # top-5 capped at the 3 classes
    assert results["top1"] >= 2 / 3, results
