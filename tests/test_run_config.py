"""The typed run config: config.json read into one RunConfig and written back unchanged, runs written by earlier
code read as they were, and a field of the wrong type or value one line naming it."""

import json
import os
import shutil

import pytest
from conftest import ROOT, flags, run_main, run_script

from alexnet_tf import errors, run_config, run_folder

# config.json as 922e1c6's train.py wrote it (-scratch on tiny_data, one step of 8 images), its dataset since moved
CONFIG_922E1C6 = os.path.join(ROOT, "tests", "data", "config-922e1c6.json")


def written_by_922e1c6(folder):
    os.makedirs(folder, exist_ok=True)
    shutil.copy(CONFIG_922E1C6, os.path.join(folder, run_folder.CONFIG_NAME))
    return folder


def test_a_config_json_of_922e1c6_reads_into_types_and_writes_back_as_it_was(tmp_path):
    config = run_folder.load_config(written_by_922e1c6(str(tmp_path / "old")))
    assert config.architecture.num_classes == len(config.classes) == 10
    assert config.settings.steps_per_epoch == 1 and config.settings.train_layers == "all"
    assert config.images == run_config.ImageCounts(train=40, val=20) and config.log_dir is None
    assert config.classes[0] == run_config.ClassName(wnid="n09193705", words="alp")
    assert config.settings.split_rule == "permutation"  # its validation split stays the one it trained with
    run_folder.save_config(str(tmp_path / "new"), config)
    with open(CONFIG_922E1C6) as old, open(tmp_path / "new" / run_folder.CONFIG_NAME) as new:
        expected = json.load(old)
        expected["settings"].update(split_rule="permutation", log_every=100)  # what it gains: its split, its curves
        assert json.load(new) == expected


def test_an_exported_config_leaves_the_machine_s_folders_out(tmp_path):
    config = run_folder.load_config(written_by_922e1c6(str(tmp_path)))
    assert config.data_dir == "/elsewhere/ILSVRC2012"
    portable = config.portable().to_json()
    assert not {"data_dir", "log_dir"} & set(portable) and portable["classes"] == config.to_json()["classes"]


@pytest.mark.slow
def test_a_run_written_by_922e1c6_resumes_tests_and_classifies(tiny_data, one_step_run, tmp_path):
    """one_step_run's checkpoint (the same network and data) under the config.json 922e1c6's code wrote."""
    written_by_922e1c6(str(one_step_run))
    moved = run_main("test.py", "--ckpt-dir", one_step_run, cwd=tmp_path)
    assert moved.returncode == 2 and "/elsewhere/ILSVRC2012" in moved.stderr and "--data-dir" in moved.stderr
    tested = run_main("test.py", *flags(ckpt_dir=one_step_run, data_dir=tiny_data, precision="float32"), cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr
    assert "Evaluated 20 of 20 validation images" in tested.stdout and "Top-1 accuracy: " in tested.stdout
    classified = run_main("classify.py", os.path.join(ROOT, "lussari.jpg"), "--ckpt-dir", one_step_run)
    assert classified.returncode == 0 and "AlexNet saw:" in classified.stdout, classified.stderr
    resumed = run_script("train.py", "-resume", *flags(ckpt_dir=one_step_run, data_dir=tiny_data, epochs=2))
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming from {one_step_run / 'ckpt-1'} at step 1 (epoch 2)" in resumed.stdout
    assert run_folder.latest_checkpoint(str(one_step_run)).endswith("ckpt-2")
    assert run_folder.load_config(str(one_step_run)).settings.epochs == 2


WRONG_FIELDS = [
    ("architecture", [], '"architecture" is a list, not an object'),
    ("classes", "abc", "\"classes\" is 'abc', not a list"),
    ("classes", [{"wnid": "n09193705"}] * 10, "\"classes[0]\" lacks the field 'words'"),
    ("architecture.lrn", "x", "\"architecture.lrn\" is 'x', not an object"),
    ("architecture.lrn", {"bias": 2}, "\"architecture.lrn\" is {'bias': 2}, not numbers named"),
    ("settings.epochs", "ten", "\"settings.epochs\" is 'ten', not an integer"),
    ("settings.deterministic", 0, '"settings.deterministic" is 0, not true or false'),
    ("settings.batch_size", True, '"settings.batch_size" is True, not an integer'),
    ("preprocessing.mean", [1, 2], '"preprocessing" is not valid'),
    ("unreadable.train", [3], '"unreadable.train[0]" is 3, not a string'),
    ("layout", "tfds", "\"layout\" is 'tfds', not one of image folders, prepared shards"),
    ("images", {"train": 1}, "\"images\" lacks the field 'val'"),
    ("settings.colour", "red", "\"settings\" has a field this code does not know: 'colour'"),
]


@pytest.mark.parametrize(("field", "value", "said"), WRONG_FIELDS, ids=[f"{f}={v!r}"[:40] for f, v, _ in WRONG_FIELDS])
def test_a_field_of_the_wrong_type_is_one_line_naming_it(field, value, said, tmp_path, one_line_error):
    with open(CONFIG_922E1C6) as f:
        config = json.load(f)
    *parents, name = field.split(".")
    block = config
    for parent in parents:
        block = block[parent]
    block[name] = value
    os.makedirs(tmp_path / "run")
    (tmp_path / "run" / run_folder.CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(errors.CheckpointError, match="is not a run's config as written by this project"):
        run_folder.load_config(str(tmp_path / "run"))
    assert said in one_line_error(
        run_main("classify.py", os.path.join(ROOT, "lussari.jpg"), "--ckpt-dir", tmp_path / "run")
    )


def test_classes_that_do_not_match_fc8_are_refused(tmp_path, one_line_error):
    with open(CONFIG_922E1C6) as f:
        config = json.load(f)
    config["classes"] = config["classes"][1:]  # the first entry dropped: every name would shift by one
    os.makedirs(tmp_path / "run")
    (tmp_path / "run" / run_folder.CONFIG_NAME).write_text(json.dumps(config))
    error = one_line_error(run_main("classify.py", os.path.join(ROOT, "lussari.jpg"), "--ckpt-dir", tmp_path / "run"))
    assert '"classes" lists 9 classes for the 10 outputs of "architecture"' in error
