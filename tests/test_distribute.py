"""tf.distribute on this CPU: MirroredStrategy over logical CPU devices trains like one device; two workers of a
localhost cluster train, save once and resume, removing what a killed worker left."""

import glob
import json
import os
import socket
import subprocess

import numpy as np
import pytest

import alexnet
from alexnet_tf import distribute, errors, run_folder, train_options
import train
from conftest import SCRIPT_ENV, flags, run_script, script_command


@pytest.mark.slow
def test_mirrored_over_two_cpu_replicas_matches_one_device(tiny_data, tmp_path):
    settings = (
        *flags(epochs=1, steps_per_epoch=3, batch_size=8, dropout=0, augment="none", precision="float32"),
        "--deterministic",
        *flags(data_dir=tiny_data),
    )
    for strategy in ("default", "mirrored"):
        result = run_script(
            "train.py",
            "-scratch",
            *flags(strategy=strategy, cpu_replicas=2),
            *settings,
            *flags(ckpt_dir=tmp_path / strategy, log_dir=tmp_path / f"{strategy}-logs"),
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
    single, _ = alexnet.load_trained(str(tmp_path / "default"))
    mirrored, _ = alexnet.load_trained(str(tmp_path / "mirrored"))
    initial = alexnet.alexnet(num_classes=10)
    moved = max(np.abs(a - b).max() for a, b in zip(single.get_weights(), initial.get_weights()))
    difference = max(np.abs(a - b).max() for a, b in zip(single.get_weights(), mirrored.get_weights()))
    assert moved > 1e-3  # the runs trained
    # float summation order only (oneDNN convolves batches of 4 and of 8 differently); other images in a replica's
    # batch would make the difference of the order of `moved`
    assert difference < 1e-3 * moved, (difference, moved)


def test_a_global_batch_that_does_not_split_is_refused(tiny_data, tmp_path, one_line_error):
    error = one_line_error(
        run_script(
            "train.py",
            "-scratch",
            *flags(strategy="mirrored", cpu_replicas=3, batch_size=8, data_dir=tiny_data, ckpt_dir=tmp_path / "c"),
            cwd=tmp_path,
        )
    )
    assert "does not split evenly across the 3 replicas" in error


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_two_workers(*args, cwd, worker_tmp):
    """train.py as two workers of a localhost cluster (TF_CONFIG); the second worker's temporary files go to
    `worker_tmp`. Returns (returncode, stdout, stderr) of each."""
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        env = {
            **SCRIPT_ENV,
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            "TMPDIR": str(worker_tmp if index else cwd),
        }
        workers.append(
            subprocess.Popen(
                script_command("train.py", *args),
                cwd=cwd,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    results = []
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=600)
        results.append((worker.returncode, stdout, stderr))
    return results


@pytest.mark.slow
def test_two_workers_train_save_once_by_the_chief_and_resume(tiny_data, tmp_path):
    worker_tmp = tmp_path / "worker-tmp"
    worker_tmp.mkdir()
    ckpt = tmp_path / "ckpt"
    common = (
        *flags(
            data_dir=tiny_data,
            ckpt_dir=ckpt,
            log_dir=tmp_path / "logs",
            steps_per_epoch=3,
            batch_size=8,
            precision="float32",
        ),
    )
    chief, worker = run_two_workers("-scratch", "--epochs", 1, *common, cwd=tmp_path, worker_tmp=worker_tmp)
    for returncode, stdout, stderr in (chief, worker):
        assert returncode == 0, stderr
        assert "epochs 1..1 of 3 steps x 8 images" in stdout
    for found_once in ("Checking that the 40 train images decode", "Computing the training set's mean"):
        assert found_once in chief[1] and found_once not in worker[1]  # the worker took the chief's results
    assert sorted(glob.glob(str(ckpt / "*.index"))) == [str(ckpt / "ckpt-3.index")]
    assert list(worker_tmp.iterdir()) == []  # the other worker's checkpoints and logs were removed
    left_by_a_killed_worker = worker_tmp / os.path.basename(run_folder.worker_scratch(str(ckpt), "worker", 1))
    (left_by_a_killed_worker / "ckpt").mkdir(parents=True)

    for returncode, stdout, stderr in run_two_workers(
        "-resume", "--epochs", 2, *common, cwd=tmp_path, worker_tmp=worker_tmp
    ):
        assert returncode == 0, stderr
        assert f"Resuming from {ckpt / 'ckpt-3'} at step 3 (epoch 2)" in stdout
    assert run_folder.latest_checkpoint(str(ckpt)).endswith("ckpt-6")
    assert list(worker_tmp.iterdir()) == []


def test_the_replica_check_uses_the_runs_batch_size(training_config):
    def resumed_options(batch_size, replicas):
        args = train.get_args_parser().parse_args(["-resume"])
        saved = training_config(batch_size=batch_size, steps_per_epoch=10)
        return train_options.resolve(args, saved=saved, replicas=replicas)

    assert resumed_options(96, replicas=3).settings.batch_size == 96  # the default batch size, 128, would not split
    with pytest.raises(errors.UsageError, match="the run's batch size 100 does not split evenly across the 8"):
        resumed_options(100, replicas=8)


def test_a_keras_whose_internals_moved_fails_at_start_up(monkeypatch):
    from keras.src.backend.tensorflow import trainer

    assert distribute.keras_trainer_to_mend() is trainer
    monkeypatch.delattr(trainer, "reduce_per_replica")
    with pytest.raises(
        errors.UsageError, match="no longer has what train.py mends .* install the versions of requirements.txt"
    ):
        distribute.keras_trainer_to_mend()
