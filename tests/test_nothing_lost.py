"""Run folders and datasets from other people: nothing outside the run is written or removed, nothing hangs, and
nothing wrong goes without a word."""

import argparse
import errno
import json
import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf
from conftest import SCRIPT_ENV, run_main, run_script, write_classes

import data_reader
from alexnet_tf import errors, preprocessing, run_config, run_folder


def test_a_fifo_named_like_an_image_is_not_an_image(tmp_path):
    photos = write_classes(tmp_path / "photos", {"bus": 3, "car": 3})
    os.mkfifo(photos / "bus" / "pipe.jpg")  # opening it would wait for a writer forever
    os.mkfifo(photos / "bus" / "nested" / "pipe.png")
    synsets = data_reader.load_classes(str(photos))
    split = {"val_fraction": 0.5, "seed": 1}
    listed = [
        path for part in ("train", "val") for path in data_reader.read_split(str(photos), synsets, part, **split).paths
    ]
    assert len(listed) == 6 and not any("pipe" in path for path in listed)


def write_run(folder, log_dir=None):
    """A run folder's config.json (no checkpoint yet), logging into `log_dir` or its own logs/."""
    config = run_config.RunConfig(
        architecture=run_config.Architecture(num_classes=2),
        classes=(run_config.ClassName(wnid="a", words="a"), run_config.ClassName(wnid="b", words="b")),
        preprocessing=preprocessing.Preprocessing(),
        settings=None,
        log_dir=log_dir,
    )
    run_folder.save_config(str(folder), config)
    return folder


def victims(folder):
    """Files of the user's outside the run, and their contents."""
    folder.mkdir()
    files = {folder / name: name.encode() for name in ("notes.index", "notes.data-00000-of-00001", "thesis.index")}
    for path, content in files.items():
        path.write_bytes(content)
    return files


def test_a_checkpoint_index_naming_files_outside_the_run_is_refused_and_nothing_is_deleted(tmp_path):
    run, outside = write_run(tmp_path / "run"), victims(tmp_path / "victim")
    (run / run_folder.CHECKPOINT_INDEX).write_text(
        f'model_checkpoint_path: "{tmp_path}/victim/notes"\n'
        f'all_model_checkpoint_paths: "{tmp_path}/victim/notes"\n'
        f'all_model_checkpoint_paths: "{tmp_path}/victim/thesis"\n'
        'all_model_checkpoint_paths: "../victim/notes"\n'
    )
    checkpoint = tf.train.Checkpoint(weight=tf.Variable(1.0))
    with pytest.raises(errors.CheckpointError, match="names .*victim/notes.*, not a checkpoint of"):
        manager = run_folder.checkpoint_manager(checkpoint, str(run))
        for step in range(5):  # what training does: each save deletes the oldest names of the index
            manager.save(checkpoint_number=step)
    with pytest.raises(errors.CheckpointError, match="not a checkpoint of"):
        run_folder.latest_checkpoint(str(run))
    assert {path: path.read_bytes() for path in outside} == outside


def test_symlinks_in_a_run_folder_are_not_followed_for_writing(tmp_path):
    run, outside = write_run(tmp_path / "run"), victims(tmp_path / "victim")
    lock_target, config_target = tmp_path / "victim" / "notes.index", tmp_path / "victim" / "thesis.index"
    os.symlink(lock_target, run / run_folder.LOCK_NAME)
    os.symlink(config_target, run / (run_folder.CONFIG_NAME + ".tmp"))
    with pytest.raises(errors.CheckpointError, match="cannot be the run's lock file"):
        with run_folder.lock(str(run)):
            pass
    run_folder.save_config(str(run), run_folder.load_config(str(run)))
    assert not os.path.islink(run / run_folder.CONFIG_NAME) and run_folder.load_config(str(run)).classes
    assert {path: path.read_bytes() for path in outside} == outside


def test_overwrite_removes_what_the_run_wrote_and_nothing_else(tmp_path):
    tensorboard = tmp_path / "tb"
    run = write_run(tmp_path / "proj", log_dir=str(tensorboard))
    (run / "logs").mkdir()
    (run / "logs" / "app.log").write_text("the user's own")  # the run logged into tb/, so logs/ is not its
    for part in ("train", "validation"):
        (tensorboard / part).mkdir(parents=True)
    (tensorboard / "mine.txt").write_text("the user's own")
    listed = run_folder.run_files(str(run))
    assert str(run / "logs") not in listed and str(run / run_folder.CONFIG_NAME) in listed
    assert str(tensorboard / "train") in listed and str(tensorboard / "validation") in listed
    run_folder.remove(listed)
    assert (run / "logs" / "app.log").exists() and (tensorboard / "mine.txt").exists()
    assert not (tensorboard / "train").exists() and not (run / run_folder.CONFIG_NAME).exists()


def test_overwrite_removes_a_symlinked_logs_folder_as_a_link(tmp_path):
    run, outside = write_run(tmp_path / "run"), victims(tmp_path / "victim")
    os.symlink(tmp_path / "victim", run / "logs")
    listed = run_folder.run_files(str(run))
    assert str(run / "logs") in listed and run_folder.size_on_disk(listed) < 10_000
    run_folder.remove(listed)
    assert not os.path.lexists(run / "logs") and {path: path.read_bytes() for path in outside} == outside


@pytest.fixture
def immutable(tmp_path):
    """A folder nothing may be written into, not even by root (chattr +i), made writable again afterwards."""
    folder = tmp_path / "locked"
    folder.mkdir()
    subprocess.run(["chattr", "+i", folder], check=True)
    yield folder
    subprocess.run(["chattr", "-i", folder], check=True)


def test_a_folder_that_cannot_be_written_is_one_line_before_the_work(immutable, tiny_data, one_line_error):
    for command in (
        ("train.py", "-scratch", "--data-dir", tiny_data, "--ckpt-dir", immutable / "run"),
        ("test.py", "--json", immutable / "results.json"),
        ("export.py", immutable / "model"),
        ("prepare_data.py", "--make-sample", immutable / "sample"),
    ):
        error = one_line_error(run_main(*command))
        assert f"{immutable} is not writable" in error, command


def test_a_write_the_system_refuses_mid_run_is_one_line_naming_the_file(capsys):
    parser = argparse.ArgumentParser(prog="train.py")
    with pytest.raises(SystemExit) as stop, errors.reported(parser):
        raise PermissionError(errno.EPERM, "Operation not permitted", "/runs/r/config.json.tmp")
    assert stop.value.code == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert said == [
        "train.py: error: cannot write /runs/r/config.json.tmp (Operation not permitted): make its folder writable, "
        "or write elsewhere"
    ]
    with pytest.raises(FileNotFoundError), errors.reported(parser):  # not ours to word: a bug shows its traceback
        raise FileNotFoundError(errno.ENOENT, "No such file", "x")


@pytest.mark.parametrize("seed", [-1, 10**20])
@pytest.mark.parametrize("script", [("train.py", "-scratch", "--sample"), ("test.py",), ("classify.py", "x.jpg")])
def test_a_seed_out_of_range_is_one_line_before_anything_is_read(script, seed, tmp_path, one_line_error):
    error = one_line_error(run_main(*script, "--seed", seed, "--ckpt-dir", tmp_path / "none", cwd=tmp_path))
    assert f"--seed {seed} cannot work: it must be between 0 and 4294967295" in error


def test_a_tf_config_whose_task_is_not_in_its_cluster_is_one_line(tmp_path):
    tf_config = {"cluster": {"worker": ["localhost:12345"]}, "task": {"type": "worker", "index": 5}}
    result = run_script(
        "train.py",
        "-scratch",
        "--sample",
        "--ckpt-dir",
        tmp_path / "run",
        cwd=tmp_path,
        env={**SCRIPT_ENV, "TF_CONFIG": json.dumps(tf_config)},
    )
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "train.py: error: TF_CONFIG's task is worker 5, but its cluster has 1 worker(s): give each machine its own "
        "index from 0 (docs/training.md, Scaling out)"
    ]


def test_ctrl_c_while_tensorflow_loads_is_one_line():
    interrupt_tensorflow = (
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'tensorflow':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "sys.argv = ['train.py']\n"
        "import alexnet_tf\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", interrupt_tensorflow], env=SCRIPT_ENV, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 130 and result.stderr.strip().splitlines() == ["train.py: interrupted (Ctrl-C)"]


def split_by_wnid(tiny_data, out):
    """tiny_data with its validation images in WNID folders, as valprep.sh leaves them."""
    synsets = data_reader.load_synsets(os.path.join(tiny_data, data_reader.META_MAT))
    shutil.copytree(os.path.join(tiny_data, "data"), out / "data")
    for path, label in zip(*data_reader.list_val(tiny_data, synsets)):
        os.makedirs(out / data_reader.VAL_DIR / synsets[label].wnid, exist_ok=True)
        shutil.copy(path, out / data_reader.VAL_DIR / synsets[label].wnid)
    return synsets


def test_validation_classes_without_images_are_named_and_an_error_where_the_ground_truth_has_them(
    tiny_data, tmp_path, capsys
):
    synsets = split_by_wnid(tiny_data, tmp_path)
    shutil.rmtree(tmp_path / data_reader.VAL_DIR / synsets[4].wnid)  # one class folder lost
    with pytest.raises(errors.DataError, match=f"1 classes of .* have no images in .*{synsets[4].wnid}"):
        data_reader.list_val(str(tmp_path), synsets)
    os.remove(tmp_path / data_reader.GROUND_TRUTH)  # valprep.sh's layout alone: say so, and score the others
    paths, labels = data_reader.list_val(str(tmp_path), synsets)
    assert len(paths) == 18 and 4 not in labels
    assert f"1 of 10 classes have no validation images in {tmp_path / data_reader.VAL_DIR} ({synsets[4].wnid})" in (
        capsys.readouterr().out
    )


def test_a_run_folder_inside_the_dataset_or_around_it_is_refused_at_scratch(tmp_path, one_line_error):
    photos = write_classes(tmp_path / "photos", {"bus": 3, "car": 3})
    for ckpt_dir, log_dir in ((photos / "run", None), (tmp_path / "run", photos / "tb"), (tmp_path, None)):
        logs = ("--log-dir", log_dir) if log_dir else ()
        error = one_line_error(run_main("train.py", "-scratch", "--data-dir", photos, "--ckpt-dir", ckpt_dir, *logs))
        assert f"and the dataset {photos} lie one inside the other" in error
    assert sorted(os.listdir(photos)) == [".cache", "README.txt", "bus", "car"]  # nothing written among them


@pytest.mark.slow
def test_resume_with_fewer_epochs_than_done_is_refused_and_leaves_config_json(tiny_data, one_step_run, one_line_error):
    resume = ("train.py", "-resume", "--data-dir", tiny_data, "--ckpt-dir", one_step_run)
    assert run_script(*resume, "--epochs", 2).returncode == 0  # epochs of one step: two done
    before = (one_step_run / run_folder.CONFIG_NAME).read_bytes()
    error = one_line_error(run_main(*resume, "--epochs", 1))
    assert "has done 2 epochs, more than --epochs 1: pass --epochs 3 or more" in error
    assert (one_step_run / run_folder.CONFIG_NAME).read_bytes() == before


def test_a_bad_value_in_config_json_is_blamed_on_the_file_not_a_flag(tiny_data, one_step_run, one_line_error):
    config_path = one_step_run / run_folder.CONFIG_NAME
    config = json.loads(config_path.read_text())
    config["settings"]["steps_per_epoch"] = 0
    config_path.write_text(json.dumps(config))
    error = one_line_error(run_main("train.py", "-resume", "--data-dir", tiny_data, "--ckpt-dir", one_step_run))
    assert "has steps_per_epoch 0 in its config.json, which cannot work" in error and "--steps-per-epoch" not in error


def test_export_onto_a_symlink_is_refused_naming_where_it_leads(one_step_run, tmp_path, one_line_error):
    (tmp_path / "models").mkdir()
    os.symlink(tmp_path / "models", tmp_path / "link")
    error = one_line_error(run_main("export.py", tmp_path / "link", "--ckpt-dir", one_step_run, "--overwrite"))
    assert f"is a symlink to {tmp_path / 'models'}: give that folder itself" in error
    assert os.path.islink(tmp_path / "link")
