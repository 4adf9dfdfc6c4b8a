"""Shared fixtures: a tiny dataset in the ILSVRC2012 layout, and a runner for the three scripts."""
import os
import subprocess
import sys

import pytest

import data_reader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The sample dataset, 4 training and 2 validation images a class (40 and 20 images)."""
    out = tmp_path_factory.mktemp("data") / "ILSVRC2012"
    data_reader.make_sample(str(out), train_per_class=4, val_per_class=2)
    return str(out)


@pytest.fixture(scope="session")
def prepared_data(tiny_data, tmp_path_factory):
    """tiny_data as prepared shards: 3 training shards, 2 validation shards."""
    out = str(tmp_path_factory.mktemp("prepared") / "ILSVRC2012-prepared")
    data_reader.prepare(tiny_data, out, train_shards=3, val_shards=2)
    return out


def script_command(script, *args):
    """The command line of one of the project's scripts (a path under the project root), as a user types it."""
    return [sys.executable, os.path.join(ROOT, script), *map(str, args)]


def run_script(script, *args, cwd=ROOT):
    """Runs one of the project's scripts as a user would; returns the CompletedProcess (text, not checked)."""
    return subprocess.run(script_command(script, *args), cwd=cwd, env=SCRIPT_ENV, capture_output=True, text=True,
                          timeout=900)
