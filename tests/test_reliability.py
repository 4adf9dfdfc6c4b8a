"""Bad images and bad dataset files: decoded, or skipped and named, or refused in one line."""

import json
import os
import re

import numpy as np
import pytest
from numpy.lib.recfunctions import repack_fields
import scipy.io
import tensorflow as tf

import data_reader
from alexnet_tf import input_pipeline, preprocessing, run_config, sample_dataset
import train
from conftest import DECODABLE, UNREADABLE, devkit_copy, flags, run_main, run_script, write_image_kinds


def test_every_image_kind_is_decoded_or_found_unreadable(tmp_path, capsys):
    write_image_kinds(tmp_path, "x")
    paths = sorted(str(p) for p in tmp_path.iterdir())
    readable = [path for path in paths if not any(path.endswith(f"_{kind}.JPEG") for kind in UNREADABLE)]
    for checked, expected in ((paths, UNREADABLE), (readable, ())):
        unreadable = input_pipeline.find_unreadable(data_reader.Split(checked, [0] * len(checked), None), "images")
        assert sorted(unreadable) == sorted(str(tmp_path / f"x_{kind}.JPEG") for kind in expected)
        progress = capsys.readouterr().out
        assert progress.count(f"{len(checked)}/{len(checked)}") == 1, progress  # the bar closes once, not twice
    for kind in DECODABLE:
        image = preprocessing.decode_rgb(tf.io.read_file(str(tmp_path / f"x_{kind}.JPEG")))
        assert image.shape == (300, 400, 3), kind


@pytest.mark.slow
def test_training_skips_unreadable_images_naming_each_once(bad_data, tmp_path):
    result = run_script(
        "train.py",
        "-scratch",
        *flags(
            data_dir=bad_data,
            ckpt_dir=tmp_path / "ckpt",
            log_dir=tmp_path / "logs",
            epochs=1,
            batch_size=8,
            steps_per_epoch=6,
            max_bad_images=4,
        ),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    for kind in UNREADABLE:
        assert result.stdout.count(f"n09193705_bad_{kind}.JPEG") == 1, result.stdout
    assert result.stdout.count("ILSVRC2012_val_00000003.JPEG") == 1
    assert result.stdout.count("ILSVRC2012_val_00000005.JPEG") == 1
    assert re.search(r"unreadable_skipped: 4", result.stdout)
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert sorted(config["unreadable"]["train"]) == sorted(
        os.path.join(data_reader.TRAIN_DIR, "n09193705", f"n09193705_bad_{kind}.JPEG") for kind in UNREADABLE
    )


def test_too_many_unreadable_images_stop_training(bad_data, tmp_path, one_line_error):
    error = one_line_error(
        run_script(
            "train.py",
            "-scratch",
            *flags(data_dir=bad_data, ckpt_dir=tmp_path / "ckpt", max_bad_images=2),
            cwd=tmp_path,
        )
    )
    assert "4 of 49 training images are unreadable, more than the 2 allowed" in error


@pytest.mark.slow
def test_test_py_reports_unreadable_validation_images(bad_data, tmp_path, one_line_error):
    trained = run_script(
        "train.py",
        "-scratch",
        *flags(
            data_dir=bad_data, ckpt_dir=tmp_path / "ckpt", epochs=1, batch_size=8, steps_per_epoch=1, max_bad_images=4
        ),
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    tested = run_main("test.py", "--data-dir", bad_data, "--ckpt-dir", tmp_path / "ckpt", "--k-crops", 1, cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr
    lines = tested.stdout.strip().splitlines()
    assert "warning: skipping unreadable image" in tested.stdout and "ILSVRC2012_val_00000003.JPEG" in tested.stdout
    assert "ILSVRC2012_val_00000005.JPEG" in tested.stdout
    assert lines[-3] == "Evaluated 18 of 20 validation images (2 unreadable, skipped)"
    assert lines[-2].startswith("Top-1 accuracy: ") and lines[-1].startswith("Top-5 accuracy: ")
    truncated = bad_data / data_reader.VAL_DIR / data_reader.VAL_NAME.format(3)
    assert str(truncated) in one_line_error(run_main("classify.py", truncated, "--ckpt-dir", tmp_path / "ckpt"))
    bomb = bad_data / data_reader.VAL_DIR / data_reader.VAL_NAME.format(5)
    assert f"{bomb} declares 65535x65535 pixels: this project decodes at most 100,000,000" in one_line_error(
        run_main("classify.py", bomb, "--ckpt-dir", tmp_path / "ckpt")
    )


@pytest.mark.slow
def test_bad_devkit_files_are_one_line_errors(tiny_data, tmp_path, one_line_error):
    data = devkit_copy(tiny_data, tmp_path)
    meta, gt = data / data_reader.META_MAT, data / data_reader.GROUND_TRUTH
    train = ("train.py", "-scratch", "--data-dir", data, "--ckpt-dir", tmp_path / "ckpt")
    original = scipy.io.loadmat(meta)["synsets"]

    scipy.io.savemat(meta, {"something_else": np.zeros(3)})
    assert "no 'synsets' struct" in one_line_error(run_main(*train))
    scipy.io.savemat(meta, {"synsets": repack_fields(original[["ILSVRC2012_ID", "words", "num_children"]])})
    assert "lacks the fields WNID" in one_line_error(run_main(*train))
    shifted = original.copy()
    shifted["ILSVRC2012_ID"][0, 0] = np.array([[42.0]])
    scipy.io.savemat(meta, {"synsets": shifted})
    assert "are not 1..10" in one_line_error(run_main(*train))
    scipy.io.savemat(meta, {"synsets": original})

    lines = gt.read_text().splitlines()
    gt.write_text("\n".join(lines[:-1] + ["11"]) + "\n")
    assert f"line {len(lines)}: '11' is not an ILSVRC2012_ID in 1..10" in one_line_error(run_main(*train))
    gt.write_text("\n".join(lines[:-1]) + "\n")
    assert "has 19 lines but" in one_line_error(run_main(*train))
    gt.write_text("\n".join(lines) + "\n")

    first_class = data / data_reader.TRAIN_DIR / sample_dataset.LEAVES[0][0]
    for image in first_class.iterdir():
        image.unlink()
    assert "no training images for n09193705 (alp)" in one_line_error(run_main(*train))
    first_class.rmdir()
    assert "no training images for n09193705 (alp)" in one_line_error(run_main(*train))


@pytest.mark.slow
def test_a_resume_says_which_set_gained_or_lost_images_since_the_run_started(tiny_data, one_step_run, tmp_path):
    data = devkit_copy(tiny_data, tmp_path)
    for image in sorted((data / data_reader.TRAIN_DIR / sample_dataset.LEAVES[0][0]).iterdir())[:2]:
        image.unlink()
    folders = ("--data-dir", data, "--ckpt-dir", one_step_run, "--log-dir", tmp_path / "logs")
    resumed = run_main("train.py", "-resume", *folders, "--epochs", 2, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"The training set in {data} has 38 images, 40 when the run started: its epochs keep 1 step(s)" in (
        resumed.stdout
    )
    assert "validation set" not in resumed.stdout
    assert json.loads((one_step_run / "config.json").read_text())["images"] == {"train": 40, "val": 20}


def test_say_what_changed_names_each_set_whose_size_changed(capsys, training_config):
    config = training_config(steps_per_epoch=5).replace(images=run_config.ImageCounts(train=40, val=20))
    train.say_what_changed(config, "photos", run_config.ImageCounts(train=40, val=20))
    assert capsys.readouterr().out == ""
    train.say_what_changed(config, "photos", run_config.ImageCounts(train=41, val=19))
    said = capsys.readouterr().out.splitlines()
    assert said[0].startswith("The training set in photos has 41 images, 40 when the run started: its epochs keep 5")
    assert said[1].startswith("The validation set in photos has 19 images, 20 when the run started")
    train.say_what_changed(config.replace(images=None), "photos", run_config.ImageCounts(train=41, val=19))
    assert capsys.readouterr().out == ""  # a run from before config.json kept the numbers
