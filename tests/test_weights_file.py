"""Weight files are read as data: the genuine format loads, a crafted pickle is refused before it runs."""

import os

import numpy as np
import pytest

from alexnet_tf import errors, weights_file
from conftest import write_npy


def layers():
    rng = np.random.default_rng(0)
    return {
        "conv1": [rng.normal(0, 0.01, (11, 11, 3, 96)).astype(np.float32), np.zeros(96, np.float32)],
        "fc8": [rng.normal(0, 0.01, (4096, 1000)).astype(np.float32), np.ones(1000, np.float32)],
    }


@pytest.mark.parametrize("protocol", [2, 3, 5])
def test_a_genuine_weight_file_loads(tmp_path, protocol):
    write_npy(tmp_path / "w.npy", layers(), protocol)
    loaded = weights_file.load_pickled_dict(str(tmp_path / "w.npy"))
    expected = np.load(tmp_path / "w.npy", allow_pickle=True, encoding="latin1").item()
    assert sorted(loaded) == sorted(expected) == ["conv1", "fc8"]
    for name in expected:
        for ours, theirs in zip(loaded[name], expected[name]):
            assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)


class RunsACommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_crafted_weight_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "it-ran"
    crafted = tmp_path / "bvlc_alexnet.npy"
    write_npy(crafted, {"conv1": [RunsACommand(f"touch {marker}")]}, protocol=2)
    with pytest.raises(errors.DataError, match=r"refused, nothing of it was run: it names posix\.system"):
        weights_file.load_pickled_dict(str(crafted))
    assert not marker.exists()


def test_files_not_of_the_format_are_data_errors(tmp_path):
    np.save(tmp_path / "plain.npy", np.zeros(3))
    (tmp_path / "text.npy").write_text("not numpy")
    write_npy(tmp_path / "list.npy", [1, 2], protocol=3)
    write_npy(tmp_path / "whole.npy", layers(), protocol=3)
    (tmp_path / "truncated.npy").write_bytes((tmp_path / "whole.npy").read_bytes()[:5000])
    for name, message in (
        ("plain", "plain float64 array"),
        ("text", "not a weight file"),
        ("list", "holds a list"),
        ("truncated", "not a weight file"),
        ("missing", "cannot read"),
    ):
        with pytest.raises(errors.DataError, match=message):
            weights_file.load_pickled_dict(str(tmp_path / f"{name}.npy"))
