"""ImageNet as TensorFlow Datasets prepared it, read without tensorflow_datasets: classes from its label file, splits
and shards from dataset_info.json, file names kept (so ReaL applies), and train.py and test.py on it."""

import json
import os
import shutil

import pytest
from conftest import flags, run_main, run_script

import data_reader
from alexnet_tf import errors, evaluation, input_pipeline


def test_a_tfds_folder_gives_its_label_file_s_classes_and_the_same_images_and_labels(tfds_data, tiny_data):
    classes = data_reader.load_classes(tfds_data)
    devkit = data_reader.load_synsets(os.path.join(tiny_data, data_reader.META_MAT))
    assert [s.wnid for s in classes] == sorted(s.wnid for s in devkit)  # the label file's order, not the devkit's
    for part in ("train", "val"):
        split = data_reader.read_split(tfds_data, classes, part)
        assert split.layout == "TFDS shards" and not split.resized
        names = evaluation.image_names(split, tfds_data)
        labels = [int(label) for _, label in input_pipeline.encoded_images(split)]
        ours = data_reader.read_split(tiny_data, devkit, part)
        expected = sorted((os.path.basename(p), devkit[label].wnid) for p, label in zip(ours.paths, ours.labels))
        assert sorted((name, classes[label].wnid) for name, label in zip(names, labels)) == expected


def test_a_tfds_folder_without_its_shards_or_fields_is_one_error(tfds_data, tmp_path):
    broken = tmp_path / "imagenet2012"
    shutil.copytree(tfds_data, broken)
    os.remove(broken / "imagenet2012-validation.tfrecord-00000-of-00001")
    classes = data_reader.load_classes(str(broken))
    with pytest.raises(errors.DataError, match="1 of the 1 shards .*dataset_info.json lists are missing"):
        data_reader.read_split(str(broken), classes, "val")
    (broken / "dataset_info.json").write_text(json.dumps({"name": "imagenet2012", "splits": [{"name": "train"}]}))
    with pytest.raises(errors.DataError, match="is not TFDS's dataset_info.json"):
        data_reader.read_split(str(broken), classes, "val")


@pytest.mark.slow
def test_train_py_and_test_py_on_a_tfds_folder(tfds_data, tmp_path):
    run = tmp_path / "run"
    scratch = run_script(
        "train.py",
        "-scratch",
        *flags(data_dir=tfds_data, ckpt_dir=run, epochs=1, steps_per_epoch=2, batch_size=8, save_every=2),
    )
    assert scratch.returncode == 0, scratch.stderr
    assert json.loads((run / "config.json").read_text())["layout"] == "TFDS shards"
    resumed = run_script("train.py", "-resume", *flags(ckpt_dir=run, epochs=2))
    assert resumed.returncode == 0 and "Resuming from" in resumed.stdout, resumed.stderr
    tested = run_main("test.py", *flags(ckpt_dir=run, crops="center", report=tmp_path / "report"))
    assert tested.returncode == 0, tested.stderr
    assert "Evaluated 20 of 20 validation images" in tested.stdout
    rows = (tmp_path / "report" / "predictions.csv").read_text().splitlines()[1:]
    assert all(row.startswith("ILSVRC2012_val_") for row in rows) and len(rows) == 20
