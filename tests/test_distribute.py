"""tf.distribute on this CPU: MirroredStrategy over logical CPU devices trains like one device."""
import numpy as np

import alexnet
from conftest import run_script
from test_scripts import one_line_error


def test_mirrored_over_two_cpu_replicas_matches_one_device(tiny_data, tmp_path):
    settings = ("--epochs", 1, "--steps-per-epoch", 3, "--batch-size", 8, "--dropout", 0, "--augment", "none",
                "--precision", "float32", "--data-dir", tiny_data)
    for strategy in ("default", "mirrored"):
        result = run_script("train.py", "-scratch", "--strategy", strategy, "--cpu-replicas", 2, *settings,
                            "--ckpt-dir", tmp_path / strategy, "--log-dir", tmp_path / f"{strategy}-logs",
                            cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    single, _ = alexnet.load_trained(str(tmp_path / "default"))
    mirrored, _ = alexnet.load_trained(str(tmp_path / "mirrored"))
    initial = alexnet.alexnet(num_classes=10)
    moved = max(np.abs(a - b).max() for a, b in zip(single.get_weights(), initial.get_weights()))
    difference = max(np.abs(a - b).max() for a, b in zip(single.get_weights(), mirrored.get_weights()))
    assert moved > 1e-3  # the runs trained
    assert difference < 1e-5, difference


def test_a_global_batch_that_does_not_split_is_refused(tiny_data, tmp_path):
    error = one_line_error(run_script("train.py", "-scratch", "--strategy", "mirrored", "--cpu-replicas", 3,
                                      "--batch-size", 8, "--data-dir", tiny_data, "--ckpt-dir", tmp_path / "c",
                                      cwd=tmp_path))
    assert "does not split evenly across the 3 replicas" in error
