"""The tf.data pipelines: batches, exact resume, workers' shares, the mean."""

import itertools
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import data_reader
from alexnet_tf import errors, input_pipeline, preprocessing, run_config, run_folder

STREAM = {"spec": preprocessing.Preprocessing(), "batch_size": 4, "steps_per_epoch": 5, "first_epoch": 0, "epochs": 2}
TWO_EPOCHS = {"batch_size": 8, "steps_per_epoch": 5, "first_epoch": 0, "epochs": 2}


def test_training_batches_shapes_dtypes_and_mean(tiny_data):
    synsets = data_reader.load_synsets(os.path.join(tiny_data, data_reader.META_MAT))
    split = data_reader.read_split(tiny_data, synsets, "train")
    batches = [
        input_pipeline.train_dataset(
            split,
            spec=preprocessing.Preprocessing(mean=mean),
            batch_size=8,
            steps_per_epoch=2,
            first_epoch=0,
            epochs=1,
            augment="none",
        )
        for mean in ([0.0, 0.0, 0.0], [10.0, 20.0, 30.0])
    ]
    for (plain, plain_labels), (centred, labels_) in zip(*batches):
        assert plain.shape == (8, 224, 224, 3) and plain.dtype == tf.float32
        assert plain_labels.dtype == tf.int32 and set(plain_labels.numpy()) <= set(range(10))
        np.testing.assert_array_equal(plain_labels, labels_)
        np.testing.assert_allclose(plain - centred, np.broadcast_to([10.0, 20.0, 30.0], plain.shape), atol=1e-4)


@pytest.fixture(params=["folder", "prepared"])
def train_split(request):
    """The tiny training set, as image files and as prepared shards."""
    data_dir = request.getfixturevalue({"folder": "tiny_data", "prepared": "prepared_data"}[request.param])
    synsets = data_reader.load_synsets(os.path.join(data_dir, data_reader.META_MAT))
    return data_reader.read_split(data_dir, synsets, "train")


def test_a_resumed_stream_continues_the_uninterrupted_one(train_split):
    whole = list(input_pipeline.train_dataset(train_split, seed=3, **STREAM))
    resumed = list(input_pipeline.train_dataset(train_split, seed=3, skip_batches=3, **STREAM))
    assert len(whole) == 10 and len(resumed) == 7
    for (x, y), (x_resumed, y_resumed) in zip(whole[3:], resumed):
        np.testing.assert_array_equal(y, y_resumed)
        np.testing.assert_array_equal(x, x_resumed)
    first_epoch = np.concatenate([y for _, y in whole[:5]])
    second_epoch = np.concatenate([y for _, y in whole[5:]])
    assert not np.array_equal(first_epoch, second_epoch)  # reshuffled every epoch


def test_input_pipelines_of_workers_read_every_image_once_an_epoch(train_split):
    read = [
        element
        for pipeline in range(2)
        for element in input_pipeline.train_elements(
            train_split, seed=1, pipeline=pipeline, pipelines=2, **TWO_EPOCHS
        ).as_numpy_iterator()
    ]
    for epoch in (0, 1):
        images = [item for item, _, element_epoch, _ in read if element_epoch == epoch]
        positions = sorted(position for _, _, element_epoch, position in read if element_epoch == epoch)
        assert len(images) == len(set(images)) == train_split.num_images == 40
        assert positions == list(range(40))
    uninterrupted = list(
        input_pipeline.train_elements(train_split, seed=1, pipeline=1, pipelines=2, **TWO_EPOCHS).as_numpy_iterator()
    )
    resumed = list(
        input_pipeline.train_elements(
            train_split, seed=1, skip_batches=3, pipeline=1, pipelines=2, **TWO_EPOCHS
        ).as_numpy_iterator()
    )
    assert [(epoch, position) for *_, epoch, position in resumed] == [
        (epoch, position) for *_, epoch, position in uninterrupted[3 * 4 :]
    ]


def test_workers_read_their_own_prepared_shards():
    sizes = [101, 99, 100, 100, 98, 102, 100, 100]
    for epoch in (0, 1):
        plans = [
            input_pipeline.shard_plan(
                sizes, per_epoch=800, first_epoch=epoch, epochs=epoch + 1, seed=1, skip=0, part=part, parts=4
            )
            for part in range(4)
        ]
        shards = [set(shard) for shard, *_ in plans]
        assert all(sum(end - start) == 200 for _, _, start, end, *_ in plans)
        assert all(2 <= len(read) <= 3 for read in shards)  # two shards' worth each, and its share of a boundary
        assert sum(len(a & b) for n, a in enumerate(shards) for b in shards[n + 1 :]) <= 3  # boundaries only
        whole_epoch = input_pipeline.shard_plan(
            sizes, per_epoch=800, first_epoch=epoch, epochs=epoch + 1, seed=1, skip=0
        )
        assert list(whole_epoch[0]) == [shard for shard, _ in itertools.groupby(np.concatenate([p[0] for p in plans]))]


def test_compute_mean_of_solid_images(tmp_path):
    paths = []
    for n, colour in enumerate(((10, 20, 30), (30, 40, 50))):
        Image.new("RGB", (300, 260), colour).save(tmp_path / f"{n}.png")
        paths.append(str(tmp_path / f"{n}.png"))
    split = data_reader.Split(paths, [0] * len(paths), None)
    np.testing.assert_allclose(input_pipeline.compute_mean(split), [20, 30, 40], atol=0.5)


def test_a_run_s_class_order_relabels_image_files_and_prepared_shards(tiny_data, prepared_data, training_config):
    synsets = data_reader.load_synsets(os.path.join(tiny_data, data_reader.META_MAT))
    wnids = [s.wnid for s in synsets]
    run_wnids = wnids[3:] + wnids[:3]

    def run_of(classes):
        return training_config(num_classes=len(classes)).replace(
            classes=tuple(run_config.ClassName(wnid=wnid, words=wnid) for wnid in classes)
        )

    order = run_folder.class_order(run_of(run_wnids), wnids, "run", "data")
    for data_dir in (tiny_data, prepared_data):
        split = data_reader.read_split(data_dir, synsets, "val")
        labels = [int(label) for _, label in input_pipeline.encoded_images(split)]
        relabeled = [int(label) for _, label in input_pipeline.encoded_images(split.relabeled(order).head(15))]
        assert [run_wnids[label] for label in relabeled] == [wnids[label] for label in labels[:15]], data_dir
    assert run_folder.class_order(run_of(wnids), wnids, "run", "data") is None
    other = run_of([*run_wnids[:-1], "n00000001"])
    with pytest.raises(errors.CheckpointError, match="the run in run has other classes than data's meta.mat"):
        run_folder.class_order(other, wnids, "run", "data")
