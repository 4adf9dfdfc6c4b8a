"""Shared fixtures and helpers: a tiny dataset in the ILSVRC2012 layout and its prepared shards, a runner for the
scripts that checks their one-line errors, and the config of a training run."""
import os
import subprocess
import sys

import pytest

import sample_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The scripts run as a user runs them: TensorFlow's start-up logs left to startup.py
SCRIPT_ENV = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The sample dataset, 4 training and 2 validation images a class (40 and 20 images)."""
    out = tmp_path_factory.mktemp("data") / "ILSVRC2012"
    sample_dataset.make_sample(str(out), train_per_class=4, val_per_class=2)
    return str(out)


@pytest.fixture(scope="session")
def prepared_data(tiny_data, tmp_path_factory):
    """tiny_data as prepared shards: 3 training shards, 2 validation shards."""
    import prepared_shards

    out = str(tmp_path_factory.mktemp("prepared") / "ILSVRC2012-prepared")
    prepared_shards.prepare(tiny_data, out, train_shards=3, val_shards=2)
    return out


def script_command(script, *args):
    """The command line of one of the project's scripts (a path under the project root), as a user types it."""
    return [sys.executable, os.path.join(ROOT, script), *map(str, args)]


def run_script(script, *args, cwd=ROOT, env=None):
    """Runs one of the project's scripts as a user would; returns the CompletedProcess (text, not checked)."""
    return subprocess.run(script_command(script, *args), cwd=cwd, env=env or SCRIPT_ENV, capture_output=True,
                          text=True, timeout=900)


def expect_one_line_error(result):
    """The script's error line: exit code 2, and one line on the standard error, nothing else there."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0], result.stderr
    return lines[0]


@pytest.fixture
def one_line_error():
    return expect_one_line_error


@pytest.fixture
def training_config():
    """A factory of training configs as train.py writes them, for build_training: small, float32 unless asked."""
    def config(num_classes=3, **settings):
        return {"architecture": {"num_classes": num_classes, "groups": 1, "dropout": 0.5},
                "settings": {"seed": 0, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "steps_per_epoch": 4,
                             "batch_size": 2, "deterministic": False, "precision": "float32", **settings}}

    return config
