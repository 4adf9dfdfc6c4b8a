"""Prepared shards (prepare_data.py --prepare): the folder's images and labels, resumable, read like the folder."""

import os
import re
import shutil
import warnings

import numpy as np
import pytest
import tensorflow as tf

import data_reader
from alexnet_tf import input_pipeline, prepared_shards, preprocessing, run_folder
from conftest import flags, run_main, run_script


class Killed(Exception):
    """Stands for the run being killed between two shards."""


IMAGE, LABEL, NAME = prepared_shards.RECORD_FIELDS["prepared"]
FEATURES = {
    IMAGE: tf.io.FixedLenFeature([], tf.string),
    LABEL: tf.io.FixedLenFeature([], tf.int64),
    NAME: tf.io.FixedLenFeature([], tf.string),
}


def records(data_dir, part):
    """{filename: (label, decoded image)} of a prepared part."""
    split = data_reader.read_split(
        data_dir, data_reader.load_synsets(os.path.join(data_dir, data_reader.META_MAT)), part
    )
    parsed = tf.data.TFRecordDataset(split.paths).map(lambda record: tf.io.parse_single_example(record, FEATURES))
    return {
        example["image/filename"].decode(): (
            example["image/class/label"],
            tf.io.decode_jpeg(example["image/encoded"]).numpy(),
        )
        for example in parsed.as_numpy_iterator()
    }


def test_prepared_shards_hold_the_folder_images_with_their_labels(tiny_data, prepared_data):
    synsets = data_reader.load_synsets(os.path.join(tiny_data, data_reader.META_MAT))
    for part in ("train", "val"):
        folder = data_reader.read_split(tiny_data, synsets, part)
        prepared = records(prepared_data, part)
        assert len(prepared) == folder.num_images
        for path, label in zip(folder.paths, folder.labels):
            prepared_label, image = prepared[os.path.relpath(path, tiny_data)]
            assert prepared_label == label
            reference = preprocessing.resized(
                preprocessing.decode_rgb(tf.io.read_file(path)), preprocessing.Preprocessing()
            ).numpy()
            assert image.shape == reference.shape and min(image.shape[:2]) == preprocessing.RESIZE_SHORTER
            assert np.abs(image - reference).mean() < 3.0  # JPEG re-encoding at quality 95 of the noisy sample


def test_prepared_validation_set_evaluates_like_the_folder(tiny_data, prepared_data):
    synsets = data_reader.load_synsets(os.path.join(tiny_data, data_reader.META_MAT))
    folder_eval, prepared_eval = (
        input_pipeline.eval_dataset(
            data_reader.read_split(data_dir, synsets, "val"),
            spec=preprocessing.Preprocessing(),
            batch_size=8,
            crops="ten",
        )
        for data_dir in (tiny_data, prepared_data)
    )
    batches = [list(folder_eval), list(prepared_eval)]
    assert len(batches[0]) == len(batches[1]) == 3
    assert prepared_eval.cardinality() == 3  # a known length: Keras's evaluate ends without "ran out of data"
    for (folder_images, folder_labels), (prepared_images, prepared_labels) in zip(*batches):
        np.testing.assert_array_equal(folder_labels, prepared_labels)
        assert np.abs(folder_images.numpy() - prepared_images.numpy()).mean() < 3.0


def test_an_interrupted_preparation_continues_with_the_missing_shards(
    tiny_data, prepared_data, tmp_path, monkeypatch, capsys
):
    write_shard, written, killed = prepared_shards.write_shard, [], []

    def interrupted_after_two(source_dir, entries, synsets, path, progress):
        if len(written) == 2 and not killed:
            killed.append(path)
            raise Killed
        written.append(os.path.basename(path))
        return write_shard(source_dir, entries, synsets, path, progress)

    out = str(tmp_path / "prepared")
    monkeypatch.setattr(prepared_shards, "write_shard", interrupted_after_two)
    with pytest.raises(Killed):
        prepared_shards.prepare(tiny_data, out, train_shards=3, val_shards=2)
    assert not os.path.exists(os.path.join(out, data_reader.PREPARED_MANIFEST))
    capsys.readouterr()
    prepared_shards.prepare(tiny_data, out, train_shards=3, val_shards=2)
    total = sum(len(records(prepared_data, part)) for part in ("train", "val"))
    assert capsys.readouterr().out.count(f"{total}/{total}") == 1  # the bar closes once, not twice
    assert len(written) == 5 and len(set(written)) == 5  # two before the interruption, three after, none twice
    for name in os.listdir(prepared_data):
        if name.startswith(("train-", "validation-")):
            with open(os.path.join(out, name), "rb") as again, open(os.path.join(prepared_data, name), "rb") as once:
                assert again.read() == once.read(), name


@pytest.mark.slow
def test_train_and_test_read_prepared_shards_and_resume_on_the_folders(tiny_data, prepared_data, tmp_path):
    ckpt = ("--ckpt-dir", tmp_path / "ckpt")
    trained = run_script(
        "train.py",
        "-scratch",
        *flags(data_dir=prepared_data),
        *ckpt,
        *flags(epochs=1, steps_per_epoch=2, batch_size=8, log_dir=tmp_path / "logs"),
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    assert "Training on 40 images, validating on 20" in trained.stdout
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tested = run_main("test.py", "--data-dir", prepared_data, *ckpt, "--limit", 15, "--k-crops", 2, cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr
    assert not [warning for warning in caught if "ran out of data" in str(warning.message)]
    assert "Evaluated 15 of 15 validation images" in tested.stdout
    resumed = run_script(
        "train.py",
        "-resume",
        *flags(data_dir=tiny_data),
        *ckpt,
        *flags(epochs=2, log_dir=tmp_path / "logs"),
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "trained on prepared shards and continues on image folders" in resumed.stdout
    assert "Checking that the 40 train images decode" in resumed.stdout
    assert run_folder.load_config(str(tmp_path / "ckpt")).layout == "image folders"


def cut_short(shard, by):
    """Rewrites a prepared shard without its last `by` records."""
    stored = list(tf.data.TFRecordDataset(str(shard)).as_numpy_iterator())
    with tf.io.TFRecordWriter(str(shard)) as writer:
        for record in stored[:-by]:
            writer.write(record)
    return len(stored)


@pytest.mark.slow
def test_shards_cut_short_after_preparing_are_a_one_line_error(prepared_data, one_step_run, tmp_path, one_line_error):
    changed = shutil.copytree(prepared_data, tmp_path / "prepared")
    cut_short(sorted(changed.glob("validation-*"))[-1], by=3)
    total = len(records(prepared_data, "val"))
    line = one_line_error(run_main("test.py", *flags(data_dir=changed, ckpt_dir=one_step_run)))
    assert f"the prepared shards in {changed} hold fewer images than when they were prepared" in line
    assert f"({total - 3} where {total} were expected;" in line
    changed = shutil.copytree(prepared_data, tmp_path / "prepared-train")
    for shard in changed.glob("train-*"):  # the one step of the resumed epoch reads one of them
        cut_short(shard, by=2)
    resumed = run_script("train.py", "-resume", *flags(data_dir=changed, ckpt_dir=one_step_run, epochs=2))
    line = one_line_error(resumed)
    assert f"the prepared shards in {changed} hold fewer images than when they were prepared" in line
    found, expected = map(int, re.search(r"\((\d+) where (\d+) were expected;", line).groups())
    assert found == expected - 2


def test_prepare_from_no_dataset_or_a_prepared_one_is_a_one_line_error(prepared_data, tmp_path, one_line_error):
    error = one_line_error(
        run_main("prepare_data.py", "--prepare", tmp_path / "nowhere", tmp_path / "out", cwd=tmp_path)
    )
    assert "dataset folder" in error and "nowhere not found" in error
    error = one_line_error(run_main("prepare_data.py", "--prepare", prepared_data, tmp_path / "out", cwd=tmp_path))
    assert "holds prepared shards already" in error


def test_prepare_into_the_dataset_itself_is_a_one_line_error_that_writes_nothing(tiny_data, tmp_path, one_line_error):
    dataset = tmp_path / "ILSVRC2012"
    shutil.copytree(tiny_data, dataset)
    before = sorted(str(path.relative_to(dataset)) for path in dataset.rglob("*"))
    for out_dir in (dataset, dataset / data_reader.TRAIN_DIR, "."):
        error = one_line_error(run_main("prepare_data.py", "--prepare", dataset, out_dir, cwd=dataset))
        assert f"is inside the dataset {dataset}, which its shards would change: write them beside it" in error
    assert sorted(str(path.relative_to(dataset)) for path in dataset.rglob("*")) == before
