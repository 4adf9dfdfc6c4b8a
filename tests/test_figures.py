"""See what the network learned: the paper's Figure 3 (conv1's kernels) and Figure 4 (nearest neighbours in fc7's
space), and features.py's vectors for other programs."""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import ROOT, flags, run_main
from PIL import Image

import alexnet
import data_reader
from alexnet_tf import figures, preprocessing, run_folder


@pytest.mark.parametrize("groups", [1, 2])
def test_each_kernel_tile_is_its_kernel_scaled_alone_and_groups_stack_in_order(groups):
    kernel = np.random.default_rng(0).normal(0, 0.01, (11, 11, 3, 96)).astype(np.float32)
    kernel[..., 5] *= 100  # one filter far larger: each is scaled on its own
    figure = figures.kernel_figure(kernel, groups)
    tiles = figures.kernel_tiles(kernel)
    for index in range(96):
        np.testing.assert_array_equal(figures.tile_at(figure, index, groups, 96, 11), tiles[index])
    assert tiles.min(axis=(1, 2, 3)).tolist() == [0] * 96 and tiles.max(axis=(1, 2, 3)).tolist() == [255] * 96
    rows = 6  # 96 kernels in rows of 16: three rows a group of two
    height = rows * (11 * figures.MAGNIFY + figures.GAP) + figures.GAP + 4 * figures.GAP * (groups - 1)
    assert figure.size == (16 * (11 * figures.MAGNIFY + figures.GAP) + figures.GAP, height)
    if groups == 2:  # filter 48, the second group's first, starts a row below the first group's three, set apart
        white = np.asarray(figure)[3 * (11 * figures.MAGNIFY + figures.GAP) + figures.GAP : -1][: 4 * figures.GAP]
        assert (white == 255).all()


def test_nearest_keeps_the_nearest_of_every_batch_as_a_full_search_would():
    rng = np.random.default_rng(1)
    queries, searched = rng.normal(size=(4, 16)), rng.normal(size=(50, 16))
    searched[17] = queries[2]  # a query's own copy: found first, at distance 0
    index, distance = figures.nearest(queries, np.array_split(searched, 7), 5)
    full = np.linalg.norm(queries[:, None] - searched[None], axis=2)
    np.testing.assert_array_equal(index, np.argsort(full, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(distance, np.sort(full, axis=1)[:, :5], atol=1e-9)
    assert index[2, 0] == 17 and distance[2, 0] == pytest.approx(0, abs=1e-6)


@pytest.mark.slow
def test_figures_py_draws_the_run_s_kernels_and_finds_an_image_in_both_sets_first(one_step_run, tiny_data, tmp_path):
    data = tmp_path / "ILSVRC2012"
    shutil.copytree(tiny_data, data)
    synsets = data_reader.load_synsets(str(data / data_reader.META_MAT))
    paths, labels = data_reader.list_val(str(data), synsets)
    copy = data / data_reader.TRAIN_DIR / synsets[labels[3]].wnid / "copy_of_val_4.JPEG"
    shutil.copy(paths[3], copy)  # the fourth validation image is a training image too
    out = tmp_path / "figures"
    result = run_main(
        "figures.py", *flags(ckpt_dir=one_step_run, out=out, data_dir=data, queries=20, neighbours=3, projector=True)
    )
    assert result.returncode == 0, result.stderr
    model, config = alexnet.load_trained(str(one_step_run))
    figure = Image.open(out / "conv1_kernels.png")
    tiles = figures.kernel_tiles(model.get_layer("conv1").get_weights()[0])
    for index in (0, 47, 95):
        np.testing.assert_array_equal(figures.tile_at(figure, index, config.architecture.groups, 96, 11), tiles[index])
    rows = json.loads((out / "neighbours.json").read_text())
    assert len(rows) == 20 and all(len(row["neighbours"]) == 3 for row in rows)
    (found,) = [row for row in rows if row["query"] == os.path.relpath(paths[3], data)]
    assert found["neighbours"][0]["path"] == os.path.relpath(copy, data)
    assert found["neighbours"][0]["distance"] == pytest.approx(0, abs=1e-3)
    assert all(row["neighbours"][0]["distance"] <= row["neighbours"][1]["distance"] for row in rows)
    assert Image.open(out / "neighbours.png").size[1] == 20 * (figures.THUMBNAIL + figures.GAP) + figures.GAP
    metadata = (out / "projector" / "metadata.tsv").read_text().splitlines()
    assert len(metadata) == 1 + 20 + 41 and (out / "projector" / "projector_config.pbtxt").exists()


@pytest.mark.slow
def test_a_run_without_a_dataset_gets_figure_3_alone(one_step_run, tmp_path):
    config_path = one_step_run / run_folder.CONFIG_NAME
    config = json.loads(config_path.read_text())
    del config["data_dir"], config["log_dir"]  # as import_weights.py --classes writes it
    config_path.write_text(json.dumps(config))
    result = run_main("figures.py", *flags(ckpt_dir=one_step_run, out=tmp_path / "figures"))
    assert result.returncode == 0, result.stderr
    assert "names no dataset (imported weights): Figure 3 alone" in result.stdout
    assert sorted(os.listdir(tmp_path / "figures")) == ["conv1_kernels.png"]


@pytest.mark.slow
def test_features_py_writes_the_layer_s_output_for_each_readable_image(one_step_run, tiny_data, tmp_path):
    images = tmp_path / "mine"
    shutil.copytree(os.path.join(tiny_data, data_reader.VAL_DIR), images / "nested")
    (images / "broken.jpg").write_bytes(b"not an image")
    for layer, pooling, width in (("fc7", None, 4096), ("pool5", "avg", 256)):
        out = tmp_path / f"{layer}.npz"
        options = flags(ckpt_dir=one_step_run, layer=layer, pooling=pooling, out=out)
        result = run_main("features.py", *options, images, os.path.join(ROOT, "lussari.jpg"))
        assert result.returncode == 0 and "skipped: " in result.stderr and "broken.jpg" in result.stderr
        written = np.load(out)
        assert written["features"].shape == (21, width) and written["features"].dtype == np.float32
        assert str(images / "broken.jpg") not in written["paths"].tolist()
        spec = run_folder.load_config(str(one_step_run)).preprocessing
        batch = np.stack([preprocessing.load_image_crops(p, spec, "center", 1)[0] for p in written["paths"][:3]])
        expected = alexnet.feature_extractor(str(one_step_run), layer, pooling=pooling).predict(batch, verbose=0)
        np.testing.assert_allclose(written["features"][:3], expected, rtol=1e-4, atol=1e-4)
