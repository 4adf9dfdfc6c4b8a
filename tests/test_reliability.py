"""Bad images, bad files and arguments, and crash-safe exact resume."""
import fcntl
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from numpy.lib.recfunctions import repack_fields
import scipy.io
import tensorflow as tf
from PIL import Image

import alexnet
import data_reader
import train
from conftest import ROOT, SCRIPT_ENV, run_script, script_command
from test_scripts import one_line_error

DECODABLE = ("gray", "cmyk", "png", "gif", "bmp")
UNREADABLE = ("truncated", "empty", "text")


def write_image_kinds(folder, prefix):
    """One file of every kind the ILSVRC2012 training set is known to hold, all named .JPEG."""
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    photo.convert("L").save(folder / f"{prefix}_gray.JPEG")
    photo.convert("CMYK").save(folder / f"{prefix}_cmyk.JPEG")
    for kind in ("png", "gif", "bmp"):
        photo.save(folder / f"{prefix}_{kind}.JPEG", format=kind.upper())
    photo.save(folder / "whole.jpg")
    data = (folder / "whole.jpg").read_bytes()
    os.remove(folder / "whole.jpg")
    (folder / f"{prefix}_truncated.JPEG").write_bytes(data[:len(data) // 2])
    (folder / f"{prefix}_empty.JPEG").write_bytes(b"")
    (folder / f"{prefix}_text.JPEG").write_text("<html>not an image</html>")


@pytest.fixture
def bad_data(tiny_data, tmp_path):
    """The tiny sample with every image kind added to the first class, and one truncated validation image."""
    data = tmp_path / "ILSVRC2012"
    shutil.copytree(tiny_data, data)
    write_image_kinds(data / data_reader.TRAIN_DIR / data_reader.SAMPLE_LEAVES[0][0], "n09193705_bad")
    val = data / data_reader.VAL_DIR / data_reader.VAL_NAME.format(3)
    val.write_bytes(val.read_bytes()[:300])
    return data


def test_every_image_kind_is_decoded_or_found_unreadable(tmp_path):
    write_image_kinds(tmp_path, "x")
    paths = sorted(str(p) for p in tmp_path.iterdir())
    unreadable = data_reader.find_unreadable(data_reader.Split(paths, [0] * len(paths), None), "images")
    assert sorted(unreadable) == sorted(str(tmp_path / f"x_{kind}.JPEG") for kind in UNREADABLE)
    for kind in DECODABLE:
        image = data_reader.decode_rgb(tf.io.read_file(str(tmp_path / f"x_{kind}.JPEG")))
        assert image.shape == (300, 400, 3), kind


def test_training_skips_unreadable_images_naming_each_once(bad_data, tmp_path):
    result = run_script("train.py", "-scratch", "--data-dir", bad_data, "--ckpt-dir", tmp_path / "ckpt",
                        "--log-dir", tmp_path / "logs", "--epochs", 1, "--batch-size", 8, "--steps-per-epoch", 6,
                        "--max-bad-images", 3,
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for kind in UNREADABLE:
        assert result.stdout.count(f"n09193705_bad_{kind}.JPEG") == 1, result.stdout
    assert result.stdout.count("ILSVRC2012_val_00000003.JPEG") == 1
    assert re.search(r"unreadable_skipped: 3", result.stdout)
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert sorted(config["unreadable"]["train"]) == sorted(
        os.path.join(data_reader.TRAIN_DIR, "n09193705", f"n09193705_bad_{kind}.JPEG") for kind in UNREADABLE)


def test_too_many_unreadable_images_stop_training(bad_data, tmp_path):
    error = one_line_error(run_script("train.py", "-scratch", "--data-dir", bad_data, "--ckpt-dir",
                                      tmp_path / "ckpt", "--max-bad-images", 2, cwd=tmp_path))
    assert "3 of 48 training images are unreadable, more than the 2 allowed" in error


def test_test_py_reports_unreadable_validation_images(bad_data, tmp_path):
    trained = run_script("train.py", "-scratch", "--data-dir", bad_data, "--ckpt-dir", tmp_path / "ckpt",
                         "--epochs", 1, "--batch-size", 8, "--steps-per-epoch", 1, "--max-bad-images", 3,
                         cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    tested = run_script("test.py", "--data-dir", bad_data, "--ckpt-dir", tmp_path / "ckpt", "--k-crops", 1,
                        cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr
    lines = tested.stdout.strip().splitlines()
    assert "warning: skipping unreadable image" in tested.stdout and "ILSVRC2012_val_00000003.JPEG" in tested.stdout
    assert lines[-3] == "Evaluated 19 of 20 validation images (1 unreadable, skipped)"
    assert lines[-2].startswith("Top-1 accuracy: ") and lines[-1].startswith("Top-5 accuracy: ")
    truncated = bad_data / data_reader.VAL_DIR / data_reader.VAL_NAME.format(3)
    assert str(truncated) in one_line_error(run_script("classify.py", truncated, "--ckpt-dir", tmp_path / "ckpt"))


def devkit_copy(tiny_data, tmp_path):
    data = tmp_path / "ILSVRC2012"
    shutil.copytree(tiny_data, data)
    return data


def test_bad_devkit_files_are_one_line_errors(tiny_data, tmp_path):
    data = devkit_copy(tiny_data, tmp_path)
    meta, gt = data / data_reader.META_MAT, data / data_reader.GROUND_TRUTH
    train = ("train.py", "-scratch", "--data-dir", data, "--ckpt-dir", tmp_path / "ckpt")
    original = scipy.io.loadmat(meta)["synsets"]

    scipy.io.savemat(meta, {"something_else": np.zeros(3)})
    assert "no 'synsets' struct" in one_line_error(run_script(*train))
    scipy.io.savemat(meta, {"synsets": repack_fields(original[["ILSVRC2012_ID", "words", "num_children"]])})
    assert "lacks the fields WNID" in one_line_error(run_script(*train))
    shifted = original.copy()
    shifted["ILSVRC2012_ID"][0, 0] = np.array([[42.0]])
    scipy.io.savemat(meta, {"synsets": shifted})
    assert "are not 1..10" in one_line_error(run_script(*train))
    scipy.io.savemat(meta, {"synsets": original})

    lines = gt.read_text().splitlines()
    gt.write_text("\n".join(lines[:-1] + ["11"]) + "\n")
    assert f"line {len(lines)}: '11' is not an ILSVRC2012_ID in 1..10" in one_line_error(run_script(*train))
    gt.write_text("\n".join(lines[:-1]) + "\n")
    assert "has 19 lines but" in one_line_error(run_script(*train))
    gt.write_text("\n".join(lines) + "\n")

    first_class = data / data_reader.TRAIN_DIR / data_reader.SAMPLE_LEAVES[0][0]
    for image in first_class.iterdir():
        image.unlink()
    assert "no training images for n09193705 (alp)" in one_line_error(run_script(*train))
    first_class.rmdir()
    assert "no training images for n09193705 (alp)" in one_line_error(run_script(*train))


@pytest.fixture
def one_step_run(tiny_data, tmp_path):
    ckpt = tmp_path / "ckpt"
    result = run_script("train.py", "-scratch", "--data-dir", tiny_data, "--ckpt-dir", ckpt, "--epochs", 1,
                        "--batch-size", 8, "--steps-per-epoch", 1, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return ckpt


def test_bad_run_folders_are_one_line_errors(tiny_data, tmp_path, one_step_run):
    resume = ("train.py", "-resume", "--data-dir", tiny_data, "--ckpt-dir", one_step_run)
    assert "has groups 1, not 2" in one_line_error(run_script(*resume, "--groups", 2))
    other = devkit_copy(tiny_data, tmp_path)
    synsets = scipy.io.loadmat(other / data_reader.META_MAT)["synsets"]
    synsets["WNID"][0, 0] = np.array(["n00000042"])
    scipy.io.savemat(other / data_reader.META_MAT, {"synsets": synsets})
    assert "was trained on other classes than" in one_line_error(
        run_script("test.py", "--data-dir", other, "--ckpt-dir", one_step_run))
    (tmp_path / "empty").mkdir()
    assert "no trained run" in one_line_error(run_script("test.py", "--data-dir", tiny_data, "--ckpt-dir",
                                                         tmp_path / "empty"))
    config = json.loads((one_step_run / "config.json").read_text())
    config["architecture"]["num_classes"] = 5
    (one_step_run / "config.json").write_text(json.dumps(config))
    assert "does not fit the model" in one_line_error(
        run_script("classify.py", os.path.join(ROOT, "lussari.jpg"), "--ckpt-dir", one_step_run))


def test_a_second_training_on_the_same_folder_is_refused(tiny_data, one_step_run):
    with open(one_step_run / "train.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running train.py holds
        error = one_line_error(run_script("train.py", "-resume", "--data-dir", tiny_data, "--ckpt-dir", one_step_run))
    assert "another train.py is training in" in error


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path):
    result = run_script("train.py", "-scratch", "--data-dir", tiny_data, "--ckpt-dir", tmp_path / "ckpt",
                        "--epochs", 1, "--batch-size", 8, "--save-every", 1, "--lr", 1e4, "--precision", "float32",
                        cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    step = int(re.search(r"error: the loss is (?:nan|inf|-inf) at step (\d+)", result.stderr).group(1))
    latest = saved_step(tmp_path / "ckpt")
    assert latest is not None and latest < step
    model, _ = alexnet.load_trained(str(tmp_path / "ckpt"))
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_a_checkpoint_that_cannot_be_written_is_a_one_line_error(tiny_data, tmp_path):
    # a file size limit makes the checkpoint's write fail as a full disk does, without filling the disk
    limited = ["bash", "-c", 'ulimit -f 100000 && exec "$@"', "bash",
               *script_command("train.py", "-scratch", "--data-dir", tiny_data, "--ckpt-dir", tmp_path / "ckpt",
                               "--log-dir", tmp_path / "logs", "--epochs", 1, "--steps-per-epoch", 2,
                               "--batch-size", 8, "--save-every", 1)]
    result = subprocess.run(limited, cwd=tmp_path, env=SCRIPT_ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"train.py: error: could not write checkpoint {tmp_path / 'ckpt' / 'ckpt-1'}: a file size limit was reached "
        "(OutOfRangeError): free space, then start again with -scratch --overwrite")
    assert sorted(os.listdir(tmp_path / "ckpt")) == [alexnet.CONFIG_NAME, train.LOCK_NAME]  # no partial checkpoint


def test_a_disk_without_room_for_the_checkpoints_is_refused_at_the_start(tmp_path):
    train.check_free_space(str(tmp_path), size=1, kept=3, saved=0)
    with pytest.raises(alexnet.CheckpointError, match=f"{tmp_path} has .* GB free, and the run needs .* GB more"):
        train.check_free_space(str(tmp_path), size=10**18, kept=3, saved=0)


def saved_step(ckpt):
    """The step of the latest complete checkpoint in `ckpt` (None: no checkpoint yet)."""
    latest = tf.train.latest_checkpoint(str(ckpt))
    return latest and int(latest.rsplit("-", 1)[1])


def kill_after_a_new_checkpoint(train_args, ckpt, after_step, rng):
    """Starts train.py, waits for a checkpoint past `after_step`, then SIGKILLs it at a random moment."""
    process = subprocess.Popen(script_command("train.py", *train_args), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env=SCRIPT_ENV)
    deadline = time.time() + 300
    while time.time() < deadline and (saved_step(ckpt) or 0) <= after_step:
        assert process.poll() is None, "training ended before it could be killed"
        time.sleep(0.05)
    time.sleep(rng.uniform(0, 1.0))
    assert process.poll() is None, "training ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    stdout, _ = process.communicate()
    return stdout


def assert_resumed_at(stdout, step):
    assert re.search(rf"^Resuming from \S+ckpt-{step} at step {step} \(epoch {step // 5 + 1}\)$", stdout, re.M), stdout


def test_killed_twice_and_resumed_equals_an_uninterrupted_run(tiny_data, tmp_path):
    rng = random.Random()
    settings = ("--epochs", 2, "--batch-size", 8, "--save-every", 2, "--deterministic")
    straight = run_script("train.py", "-scratch", *settings, "--data-dir", tiny_data, "--ckpt-dir",
                          tmp_path / "straight", "--log-dir", tmp_path / "straight-logs", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr

    ckpt = tmp_path / "killed"
    folders = ("--data-dir", tiny_data, "--ckpt-dir", ckpt, "--log-dir", tmp_path / "killed-logs")
    kill_after_a_new_checkpoint(["-scratch", *settings, *folders], ckpt, 0, rng)
    saved = saved_step(ckpt)
    assert_resumed_at(kill_after_a_new_checkpoint(["-resume", *folders], ckpt, saved, rng), saved)
    saved = saved_step(ckpt)
    finished = run_script("train.py", "-resume", *folders, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert_resumed_at(finished.stdout, saved)

    assert saved_step(ckpt) == 10
    straight_model, _ = alexnet.load_trained(str(tmp_path / "straight"))
    resumed_model, _ = alexnet.load_trained(str(ckpt))
    difference = max(np.abs(a - b).max() for a, b in zip(straight_model.get_weights(), resumed_model.get_weights()))
    assert difference < 1e-5
