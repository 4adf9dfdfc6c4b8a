"""The run folder: what a failed, killed or resumed run leaves; NaN; full disks; exact resume after SIGKILL."""

import fcntl
import json
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import types

import numpy as np
import pytest
import scipy.io
import tensorflow as tf

import alexnet
import data_reader
from alexnet_tf import callbacks, errors, evaluation, preprocessing, run_config, run_folder
from conftest import (
    ROOT,
    SCRIPT_ENV,
    devkit_copy,
    flags,
    run_main,
    run_script,
    script_command,
    script_module,
    two_step_run,
)
from tensorboard_view import as_tensorboard_shows, tensorboard_points


@pytest.mark.slow
def test_bad_run_folders_are_one_line_errors(tiny_data, tmp_path, one_step_run, one_line_error):
    resume = ("train.py", "-resume", "--data-dir", tiny_data, "--ckpt-dir", one_step_run)
    assert "has groups 1, not 2" in one_line_error(run_main(*resume, "--groups", 2))
    other = devkit_copy(tiny_data, tmp_path)
    synsets = scipy.io.loadmat(other / data_reader.META_MAT)["synsets"]
    synsets["WNID"][0, 0] = np.array(["n00000042"])
    scipy.io.savemat(other / data_reader.META_MAT, {"synsets": synsets})
    assert "has other classes than" in one_line_error(
        run_main("test.py", "--data-dir", other, "--ckpt-dir", one_step_run)
    )
    (tmp_path / "empty").mkdir()
    no_run = one_line_error(run_main("test.py", "--data-dir", tiny_data, "--ckpt-dir", tmp_path / "empty"))
    assert "no trained run" in no_run and "import the published weights" in no_run and "ckpt-bvlc" in no_run
    config = json.loads((one_step_run / "config.json").read_text())
    config["architecture"]["groups"] = 2
    (one_step_run / "config.json").write_text(json.dumps(config))
    assert "does not fit the model" in one_line_error(
        run_main("classify.py", os.path.join(ROOT, "lussari.jpg"), "--ckpt-dir", one_step_run)
    )
    config["architecture"]["num_classes"] = 5
    (one_step_run / "config.json").write_text(json.dumps(config))
    assert '"classes" lists 10 classes for the 5 outputs of "architecture"' in one_line_error(
        run_main("classify.py", os.path.join(ROOT, "lussari.jpg"), "--ckpt-dir", one_step_run)
    )


@pytest.mark.slow
def test_a_second_training_on_the_same_folder_is_refused(tiny_data, one_step_run, one_line_error):
    with open(one_step_run / "train.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running train.py holds
        error = one_line_error(run_script("train.py", "-resume", "--data-dir", tiny_data, "--ckpt-dir", one_step_run))
    assert "another train.py is training in" in error


@pytest.mark.slow
def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path):
    result = run_script(
        "train.py",
        "-scratch",
        *flags(
            data_dir=tiny_data,
            ckpt_dir=tmp_path / "ckpt",
            epochs=1,
            batch_size=8,
            save_every=1,
            lr=1e4,
            precision="float32",
        ),
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    step = int(
        re.search(
            r"error: the loss (?:is (?:nan|inf|-inf) by|diverged: the weights are not finite at) step (\d+)",
            result.stderr,
        ).group(1)
    )
    latest = saved_step(tmp_path / "ckpt")
    assert latest is not None and latest < step
    model, _ = alexnet.load_trained(str(tmp_path / "ckpt"))
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


@pytest.mark.slow
def test_a_checkpoint_that_cannot_be_written_is_a_one_line_error(tiny_data, tmp_path, one_line_error):
    # a file size limit makes the checkpoint's write fail as a full disk does, without filling the disk
    limited = [
        "bash",
        "-c",
        'ulimit -f 100000 && exec "$@"',
        "bash",
        *script_command(
            "train.py",
            "-scratch",
            *two_step_run(tiny_data, tmp_path, save_every=1),
        ),
    ]
    result = subprocess.run(limited, cwd=tmp_path, env=SCRIPT_ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"train.py: error: could not write checkpoint {tmp_path / 'ckpt' / 'ckpt-1'}: a file size limit was reached "
        "(OutOfRangeError): free space, then start again with -scratch --overwrite"
    )
    assert sorted(os.listdir(tmp_path / "ckpt")) == [run_folder.CONFIG_NAME, run_folder.LOCK_NAME]  # nothing partial


def test_a_disk_without_room_for_the_checkpoints_is_refused_at_the_start(tmp_path):
    run_folder.check_free_space(str(tmp_path), size=1, kept=3, saved=0)
    with pytest.raises(errors.CheckpointError, match=f"{tmp_path} has .* GB free, and the run needs .* GB more"):
        run_folder.check_free_space(str(tmp_path), size=10**18, kept=3, saved=0)


def saved_step(ckpt):
    """The step of the latest complete checkpoint in `ckpt` (None: no checkpoint yet)."""
    latest = tf.train.latest_checkpoint(str(ckpt))
    return latest and int(latest.rsplit("-", 1)[1])


def killed_run(kill_at, *train_args, cwd, returncode=-signal.SIGKILL):
    """train.py killed with SIGKILL, or sent another signal, at `kill_at` (see killing_train.py), ending with
    `returncode`; returns the CompletedProcess."""
    result = subprocess.run(
        script_command(os.path.join("tests", "killing_train.py"), *train_args),
        cwd=cwd,
        env={**SCRIPT_ENV, "KILL_AT": kill_at},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == returncode, (kill_at, result.stdout, result.stderr)
    return result


def assert_resumed_at(stdout, step):
    assert re.search(rf"^Resuming from \S+ckpt-{step} at step {step} \(epoch {step // 5 + 1}\)$", stdout, re.M), stdout


@pytest.mark.slow
def test_killed_twice_stopped_twice_and_resumed_equals_an_uninterrupted_run(tiny_data, tmp_path):
    settings = ("--epochs", 3, "--batch-size", 8, "--save-every", 2, "--log-every", 1, "--lr", 0.001, "--deterministic")
    straight = run_script(
        "train.py",
        "-scratch",
        *settings,
        *flags(data_dir=tiny_data, ckpt_dir=tmp_path / "straight", log_dir=tmp_path / "straight-logs"),
        cwd=tmp_path,
    )
    assert straight.returncode == 0, straight.stderr

    ckpt = tmp_path / "killed"
    folders = ("--data-dir", tiny_data, "--ckpt-dir", ckpt, "--log-dir", tmp_path / "killed-logs")
    killed_run("before-step:4", "-scratch", *settings, *folders, cwd=tmp_path)  # step 3 done, lost
    assert saved_step(ckpt) == 2
    assert_resumed_at(killed_run("saving:6", "-resume", *folders, cwd=tmp_path).stdout, 2)  # in the middle of a save
    assert saved_step(ckpt) == 5  # the epoch's end; checkpoint 6 was written but never named in the index

    # SIGTERM before step 7: step 7 ends the run with a checkpoint of its own, off the --save-every grid
    stopped = killed_run("SIGTERM-before-step:7", "-resume", *folders, cwd=tmp_path, returncode=128 + signal.SIGTERM)
    assert_resumed_at(stopped.stdout, 5)
    assert stopped.stderr.strip().endswith(
        f"train.py: stopped by SIGTERM at step 7, saved as {ckpt}/ckpt-7: continue with -resume"
    )
    assert saved_step(ckpt) == 7
    # Ctrl-C during an epoch's last call: the epoch ends first (validation, plateau rule, checkpoint)
    interrupted = killed_run("SIGINT-before-step:10", "-resume", *folders, cwd=tmp_path, returncode=128 + signal.SIGINT)
    assert_resumed_at(interrupted.stdout, 7)
    assert "val_loss" in interrupted.stdout and "stopped by SIGINT at step 10" in interrupted.stderr
    assert saved_step(ckpt) == 10

    finished = run_script("train.py", "-resume", *folders, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert_resumed_at(finished.stdout, 10)
    assert "Epoch 3/3" in finished.stdout and "Epoch 2/3" not in finished.stdout

    assert saved_step(ckpt) == 15
    straight_model, _ = alexnet.load_trained(str(tmp_path / "straight"))
    resumed_model, _ = alexnet.load_trained(str(ckpt))
    difference = max(np.abs(a - b).max() for a, b in zip(straight_model.get_weights(), resumed_model.get_weights()))
    assert difference < 1e-5

    # the curves, as TensorBoard shows them: each step's point once, that of the uninterrupted run; steps 3 and 6 were
    # written by the killed runs (6 before its save was cut short) and again after their resumes
    straight_curves = tensorboard_points(tmp_path / "straight-logs" / "steps")
    killed_curves = tensorboard_points(tmp_path / "killed-logs" / "steps")
    assert [step for step, _ in straight_curves["steps/loss"]] == list(range(1, 16))
    written = [step for step, _ in killed_curves["steps/loss"]]
    assert sorted({step for step in written if written.count(step) > 1}) == [3, 6]
    for name in ("steps/loss", "steps/top1", "steps/top5", "steps/learning_rate"):
        shown = as_tensorboard_shows(killed_curves[name])
        assert [step for step, _ in shown] == list(range(1, 16)), name
        np.testing.assert_allclose(
            [value for _, value in shown], [value for _, value in straight_curves[name]], rtol=1e-4, atol=1e-6
        )


def folder_state(folder):
    """{name: bytes} of the files in `folder`, the lock aside."""
    return {
        path.name: path.read_bytes()
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name != run_folder.LOCK_NAME
    }


@pytest.mark.slow
def test_a_new_run_that_fails_keeps_the_run_it_would_overwrite(bad_data, one_step_run, one_line_error):
    before = folder_state(one_step_run)
    overwrite = ("train.py", "-scratch", "--overwrite", "--ckpt-dir", one_step_run)
    assert "training images are unreadable" in one_line_error(
        run_main(*overwrite, "--data-dir", bad_data, "--max-bad-images", 0)
    )
    assert "--lr -1.0 cannot work: it must be positive" in one_line_error(
        run_main(*overwrite, "--data-dir", bad_data, "--lr", -1)
    )
    assert "make no batch of 1000" in one_line_error(
        run_main(*overwrite, "--data-dir", bad_data, "--max-bad-images", 4, "--batch-size", 1000)
    )
    assert folder_state(one_step_run) == before


@pytest.mark.slow
def test_unfinished_saves_and_old_logs_are_removed_and_counted_as_free_space(
    tiny_data, one_step_run, tmp_path, monkeypatch
):
    def unfinished_save():
        (one_step_run / "ckpt-7_temp").mkdir()
        (one_step_run / "ckpt-7_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\0" * 1000)

    unfinished_save()
    assert run_folder.size_on_disk(run_folder.unfinished_saves(str(one_step_run))) == 1000
    free = 10**9  # fixed: the disk's real free space moves as other test workers write
    with monkeypatch.context() as patched:
        patched.setattr(shutil, "disk_usage", lambda path: types.SimpleNamespace(free=free))
        run_folder.check_free_space(str(one_step_run), size=free + 500, kept=0, saved=0, reclaimable=1000)
        with pytest.raises(errors.CheckpointError):
            run_folder.check_free_space(str(one_step_run), size=free + 500, kept=0, saved=0)
    folders = ("--data-dir", tiny_data, "--ckpt-dir", one_step_run)
    resumed = run_script("train.py", "-resume", *folders, "--epochs", 2, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert not (one_step_run / "ckpt-7_temp").exists()
    tensorboard = one_step_run / run_folder.LOGS_NAME / "train"
    first_runs = set(os.listdir(tensorboard))
    assert len(first_runs) == 2  # the run's -scratch and its -resume, in the run folder
    unfinished_save()
    again = run_script(
        "train.py",
        "-scratch",
        "--overwrite",
        *folders,
        *flags(epochs=1, batch_size=8, steps_per_epoch=1),
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr
    assert not (one_step_run / "ckpt-7_temp").exists()
    assert run_folder.latest_checkpoint(str(one_step_run)).endswith("ckpt-1")
    assert len(os.listdir(tensorboard)) == 1 and not first_runs & set(os.listdir(tensorboard))  # the new run's alone


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_0(tiny_data, one_step_run, tmp_path):
    config = run_folder.load_config(str(one_step_run))
    run_folder.remove([path for path in run_folder.run_files(str(one_step_run)) if "config.json" not in path])
    resumed = run_script(
        "train.py",
        "-resume",
        *flags(data_dir=tiny_data, ckpt_dir=one_step_run),
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"No checkpoint in {one_step_run} yet: starting the run at step 0 with its config.json" in resumed.stdout
    assert "Checking that" not in resumed.stdout and "Computing the training set's mean" not in resumed.stdout
    assert run_folder.latest_checkpoint(str(one_step_run)).endswith("ckpt-1")
    assert run_folder.load_config(str(one_step_run)) == config


@pytest.mark.slow
def test_resume_switches_between_float32_and_bf16_but_not_to_fp16(tiny_data, one_step_run, one_line_error):
    started = run_folder.load_config(str(one_step_run)).settings.precision
    other = "float32" if started == "bf16" else "bf16"
    resume = ("train.py", "-resume", "--data-dir", tiny_data, "--ckpt-dir", one_step_run)
    assert "switches between float32 and bf16 only" in one_line_error(run_main(*resume, "--precision", "fp16"))
    resumed = run_script(*resume, "--precision", other, "--epochs", 2)
    assert resumed.returncode == 0, resumed.stderr
    assert f"The run trained in {started} and continues in {other}" in resumed.stdout
    assert run_folder.latest_checkpoint(str(one_step_run)).endswith("ckpt-2")
    assert run_folder.load_config(str(one_step_run)).settings.precision == other  # the next resume's too


@pytest.mark.slow
def test_a_resume_that_fails_leaves_config_json_as_it_was(tiny_data, one_step_run, one_line_error):
    before = (one_step_run / "config.json").read_bytes()
    data_file = next(one_step_run.glob("ckpt-1.data-*"))
    data_file.write_bytes(data_file.read_bytes()[:1000])
    assert "does not fit the model" in one_line_error(
        run_main("train.py", "-resume", "--data-dir", tiny_data, "--ckpt-dir", one_step_run, "--epochs", 3)
    )
    assert (one_step_run / "config.json").read_bytes() == before


@pytest.mark.slow
def test_test_py_names_the_checkpoint_it_evaluated(tiny_data, one_step_run, tmp_path, monkeypatch):
    test_script = script_module("test.py")
    evaluated = run_folder.latest_checkpoint(str(one_step_run))

    def evaluate_while_training_saves(model, config, split, args, *, data_dir, k_crops):
        for suffix in (".index", ".data-00000-of-00001"):
            shutil.copy(evaluated + suffix, str(one_step_run / "ckpt-2") + suffix)
        tf.compat.v1.train.update_checkpoint_state(str(one_step_run), str(one_step_run / "ckpt-2"))
        count = split.num_images
        return evaluation.Predictions(
            tuple(split.paths), np.array(split.labels), np.tile(np.arange(5), (count, 1)), np.full((count, 5), 0.2)
        )

    monkeypatch.setattr(test_script, "evaluate", evaluate_while_training_saves)
    args = test_script.get_args_parser().parse_args(
        [
            *flags(
                data_dir=tiny_data, ckpt_dir=str(one_step_run), json=str(tmp_path / "results.json"), precision="float32"
            ),
        ]
    )
    test_script.main(args)
    assert json.loads((tmp_path / "results.json").read_text())["checkpoint"] == evaluated
    assert run_folder.latest_checkpoint(str(one_step_run)).endswith("ckpt-2")


def test_test_py_without_a_readable_validation_image_says_so_in_one_line(tiny_data, one_step_run, tmp_path):
    data = devkit_copy(tiny_data, tmp_path)
    for image in (data / data_reader.VAL_DIR).iterdir():
        image.write_bytes(b"not a JPEG")
    result = run_main("test.py", "--data-dir", data, "--ckpt-dir", one_step_run, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().endswith(f"no readable validation image in {data}")


def test_a_config_json_before_the_preprocessing_block_reads_as_before(one_step_run):
    path = one_step_run / run_folder.CONFIG_NAME
    config = json.loads(path.read_text())
    block = config.pop("preprocessing")
    assert config.pop("version") == 3
    for version in ({"version": 2}, {}):  # version 1 files have no version field
        path.write_text(json.dumps({**config, **version, "mean": block["mean"]}))
        assert run_folder.load_config(str(one_step_run)).preprocessing.to_config() == block
    model, loaded = alexnet.load_trained(str(one_step_run))
    assert model.input_shape == (None, 224, 224, 3) and loaded.to_json()["architecture"] == config["architecture"]


def test_resume_refuses_imported_weights(tiny_data, one_step_run, one_line_error):
    path = one_step_run / run_folder.CONFIG_NAME
    path.write_text(
        json.dumps(
            {
                **json.loads(path.read_text()),
                "settings": None,
                "source": {"weights": "w.npy", "sha256": "0", "format": "npy"},
            }
        )
    )
    result = run_main("train.py", "-resume", *flags(data_dir=tiny_data, ckpt_dir=one_step_run))
    assert "holds weights imported from w.npy, not a run of train.py" in one_line_error(result)


def test_a_signal_is_noted_once_and_a_second_one_stops_at_once():
    stop = callbacks.StopOnSignal(checkpointer=None)
    before = {signum: signal.getsignal(signum) for signum in callbacks.StopOnSignal.SIGNALS}
    with stop.listening():
        assert signal.getsignal(signal.SIGTERM) == stop.ask
        os.kill(os.getpid(), signal.SIGTERM)  # Python runs the handler before the next line
        assert stop.signum == signal.SIGTERM
        assert all(signal.getsignal(signum) == signal.SIG_DFL for signum in callbacks.StopOnSignal.SIGNALS)
    assert {signum: signal.getsignal(signum) for signum in callbacks.StopOnSignal.SIGNALS} == before


def test_ctrl_c_outside_training_is_one_line_and_the_shell_s_exit_code(capsys):
    parser = argparse.ArgumentParser(prog="test.py")
    with pytest.raises(SystemExit) as exit, errors.reported(parser):
        raise KeyboardInterrupt
    assert exit.value.code == 130 and capsys.readouterr().err.strip() == "test.py: interrupted (Ctrl-C)"


def test_what_killed_writers_left_beside_a_target_is_removed_and_named(tmp_path, capsys):
    host = socket.gethostname()
    gone = subprocess.Popen(["true"])
    gone.wait()
    running = subprocess.Popen(["sleep", "60"])
    left = {
        "killed": tmp_path / f".staging-export-{host}-{gone.pid}",
        "running": tmp_path / f".staging-export-{host}-{running.pid}",
        "another machine's": tmp_path / f".staging-export-elsewhere-{gone.pid}",
        "another target's": tmp_path / f".staging-export2-{host}-{gone.pid}",
    }
    for folder in left.values():
        (folder / "variables").mkdir(parents=True)
    try:
        with run_folder.staging_beside(tmp_path / "export", "the SavedModel") as staging:
            assert os.path.isdir(staging) and os.path.dirname(staging) == str(tmp_path)
    finally:
        running.kill()
        running.wait()
    assert not os.path.exists(staging)
    kept = [name for name, folder in left.items() if folder.exists()]
    assert kept == ["running", "another machine's", "another target's"]
    assert capsys.readouterr().out == f"Removed {left['killed']}, left by a killed writer of the SavedModel\n"


def test_a_folder_of_the_user_s_holds_no_run_and_a_run_s_files_are_named_exactly(tmp_path):
    (tmp_path / run_folder.CKPT_DIR).mkdir()  # the clone given as --ckpt-dir: its run folder and other things
    (tmp_path / run_folder.CKPT_DIR / run_folder.CONFIG_NAME).write_text("{}")
    (tmp_path / run_folder.LOGS_NAME).mkdir()
    (tmp_path / "ckpt-notes.txt").write_text("mine")
    assert run_folder.run_files(str(tmp_path)) == []
    (tmp_path / run_folder.CONFIG_NAME).write_text('{"editor.tabSize": 4}')  # another program's
    with pytest.raises(errors.CheckpointError, match="config.json is not a run's config .*: pass another --ckpt-dir"):
        run_folder.run_files(str(tmp_path))
    config = run_config.RunConfig(
        architecture=run_config.Architecture(num_classes=2),
        classes=(run_config.ClassName(wnid="n1", words="one"), run_config.ClassName(wnid="n2", words="two")),
        preprocessing=preprocessing.Preprocessing(mean=[120.0, 110.0, 100.0]),
        settings=None,
    )
    run_folder.save_config(str(tmp_path), config)
    made = [run_folder.CONFIG_NAME, run_folder.CHECKPOINT_INDEX, "ckpt-5.index", "ckpt-5.data-00000-of-00001"]
    for name in made[1:]:
        (tmp_path / name).write_text("run")
    (tmp_path / "ckpt-7_temp").mkdir()
    expected = sorted(str(tmp_path / name) for name in [*made, "ckpt-7_temp", run_folder.LOGS_NAME])
    assert run_folder.run_files(str(tmp_path)) == expected
    assert run_folder.unfinished_saves(str(tmp_path)) == [str(tmp_path / "ckpt-7_temp")]
    (tmp_path / run_folder.SAVED_MODEL_FILE).write_bytes(b"")  # export.py's folder, which holds the run's config
    with pytest.raises(errors.CheckpointError, match="is a SavedModel written by export.py, not a run folder"):
        run_folder.run_files(str(tmp_path))
