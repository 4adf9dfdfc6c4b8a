"""The fast paths keep the semantics of the reference ones; the benchmark produces all its figures."""

import json
import os
import shutil
import subprocess
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import alexnet
from alexnet_tf import preprocessing, training
from conftest import SCRIPT_ENV, script_command, script_module


def smooth_photo(width, height, rng):
    """Photograph-like content: smooth shapes at two scales, a little grain."""
    pixels = np.full((height, width, 3), 128.0)
    for cells, amplitude in ((4, 60), (16, 25)):
        grid = rng.normal(0, amplitude, (cells, cells, 3)).astype(np.float32)
        pixels += np.stack(
            [np.asarray(Image.fromarray(grid[..., c]).resize((width, height), Image.BICUBIC)) for c in range(3)],
            axis=-1,
        )
    return Image.fromarray(np.clip(pixels + rng.normal(0, 2, pixels.shape), 0, 255).astype(np.uint8))


@pytest.mark.parametrize(
    "width, height", [(300, 225), (500, 375), (640, 480), (1600, 1200), (257, 700), (2000, 260), (230, 230)]
)
@pytest.mark.parametrize("spec", [preprocessing.Preprocessing(), preprocessing.CAFFE], ids=["ours", "caffe"])
def test_fast_jpeg_crop_matches_resize_then_crop(width, height, spec, tmp_path):
    rng = np.random.default_rng(width * height)
    smooth_photo(width, height, rng).save(tmp_path / "photo.jpg", quality=95)
    encoded = tf.io.read_file(str(tmp_path / "photo.jpg"))
    for draw in range(10):
        seed = tf.constant([width, draw], tf.int64)
        fast = preprocessing.random_crop_jpeg(encoded, spec, seed).numpy()
        reference = preprocessing.random_crop_as_stored(encoded, spec, seed).numpy()
        assert fast.shape == reference.shape == (spec.crop_size, spec.crop_size, 3)
        # libjpeg's DCT downscaling filters unlike an antialiased bilinear resize: about 1% of the range apart
        assert np.abs(fast - reference).mean() < 3.0, (draw, np.abs(fast - reference).mean())


def test_bench_counts_the_training_flops_of_each_layer():
    bench = script_module(os.path.join("benchmarks", "bench.py"))
    convolutions = {  # output side, filters, kernel side, input channels a filter sees (paper §3.5, one tower)
        "conv1": (55, 96, 11, 3),
        "conv2": (27, 256, 5, 96),
        "conv3": (13, 384, 3, 256),
        "conv4": (13, 384, 3, 384),
        "conv5": (13, 256, 3, 384),
    }
    conv_forward = {
        name: 2 * side**2 * filters * kernel**2 * inputs
        for name, (side, filters, kernel, inputs) in convolutions.items()
    }
    dense_forward = 2 * (6 * 6 * 256 * 4096 + 4096 * 4096 + 4096 * 1000)
    model = alexnet.alexnet()
    conv_training = 3 * sum(conv_forward.values()) - conv_forward["conv1"]  # conv1 needs no input gradient
    assert bench.training_flops(model, keras.layers.Conv2D) == conv_training
    assert bench.training_flops(model) == conv_training + 3 * dense_forward
    assert bench.training_flops(model, keras.layers.Dense) == 3 * dense_forward


def test_bench_ratios_pair_the_rounds_and_rates_take_the_best():
    """One side's fast moment does not make a ratio: it is the median of the two sides' ratios within each round
    (here 1.0 where the ratio of the best rates is 0.5); warm-up rounds run untimed."""
    bench = script_module(os.path.join("benchmarks", "bench.py"))
    rates = {"pipeline": [20.0, 30.0, 10.0], "decode": [20.0, 60.0, 10.0]}
    assert bench.paired_ratio(rates, "pipeline", "decode") == 1.0
    assert bench.best_of(rates) == {"pipeline": 30.0, "decode": 60.0}
    calls = []
    runs = {name: lambda name=name: calls.append(name) or 1000 for name in ("pipeline", "decode")}
    rates = bench.timed_rounds(runs, rounds=3, warmup=1)
    assert calls == ["pipeline", "decode"] * 4
    assert [len(values) for values in rates.values()] == [3, 3] and all(rate > 0 for rate in rates["decode"])


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_with_float32_logits_and_finite_loss(precision, training_config):
    config = training_config(num_classes=4, lr=0.001, batch_size=1, precision=precision)
    config["architecture"]["image_size"] = 64  # the least that pool5 takes: CPUs have no fast fp16 kernels
    model, _, _ = training.build_training(config)
    images = np.random.default_rng(0).normal(0, 50, (1, 64, 64, 3)).astype(np.float32)
    losses = [model.train_on_batch(images, np.array([2]))[0] for _ in range(2)]
    assert model(images).dtype == tf.float32
    assert model.get_layer("fc7").compute_dtype == alexnet.PRECISIONS[precision].split("_")[1]
    assert all(np.isfinite(losses))
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left as it was


@pytest.mark.slow
def test_bench_quick_writes_every_figure(tiny_data, tmp_path):
    """With --data-dir of the user's own class folders: the pipeline figures on those, the rest on generated data."""
    folders = tmp_path / "my_classes"
    train_dir = os.path.join(tiny_data, "ILSVRC2012_img_train")
    for wnid in sorted(os.listdir(train_dir))[:3]:
        shutil.copytree(os.path.join(train_dir, wnid), folders / f"class_{wnid}")
    result = subprocess.run(
        script_command(
            os.path.join("benchmarks", "bench.py"), "--quick", "--data-dir", folders, "--json", tmp_path / "bench.json"
        ),
        capture_output=True,
        text=True,
        env=SCRIPT_ENV,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads((tmp_path / "bench.json").read_text())
    assert figures["pipeline_data"] == str(folders)
    rates = (
        "pipeline_img_s_per_core",
        "decode_only_img_s_per_core",
        "pipeline_eval_img_s_per_core",
        "pil_img_s_per_core",
        "prepare_img_s_per_core",
        "pipeline_prepared_img_s_per_core",
        "decode_only_prepared_img_s_per_core",
        "train_fp32_img_s",
        "train_bf16_img_s",
        "train_groups2_fp32_img_s",
        "train_groups2_bf16_img_s",
        "matmul_fp32_gflop_s",
        "matmul_bf16_gflop_s",
        "conv_fp32_gflop_s",
        "conv_bf16_gflop_s",
        "end_to_end_img_s",
        "end_to_end_validation_seconds",
        "end_to_end_prepared_img_s",
        "end_to_end_prepared_validation_seconds",
        "bare_step_img_s",
    )
    assert all(figures[key] > 0 for key in rates), figures
    assert 0 <= figures["step_overhead_ms"] < 100
    assert figures["train_flops_per_image"] == pytest.approx(6.6e9, rel=0.05)
    for key in ("fp32", "bf16"):  # each derived figure is what its name says, from the figures measured
        assert figures[f"train_{key}_fraction_of_matmul_peak"] == pytest.approx(
            figures[f"train_{key}_img_s"] * figures["train_flops_per_image"] / 1e9 / figures[f"matmul_{key}_gflop_s"]
        )
        assert figures[f"conv_{key}_fraction_of_matmul_peak"] == pytest.approx(
            figures[f"conv_{key}_gflop_s"] / figures[f"matmul_{key}_gflop_s"]
        )
        assert figures[f"train_groups2_{key}_vs_single"] == pytest.approx(
            figures[f"train_groups2_{key}_img_s"] / figures[f"train_{key}_img_s"]
        )
    assert figures["bf16_speedup_over_fp32"] == pytest.approx(figures["train_bf16_img_s"] / figures["train_fp32_img_s"])
    for suffix, rate in (("", "pipeline_img_s_per_core"), ("_prepared", "pipeline_prepared_img_s_per_core")):
        assert figures[f"pipeline_speedup_vs_pil{suffix}"] == pytest.approx(
            figures[rate] / figures["pil_img_s_per_core"]
        )
        assert figures[f"pipeline{suffix}_fraction_of_decode"] == pytest.approx(
            figures[rate] / figures[f"decode_only{suffix}_img_s_per_core"]
        )
        # the median of the bare blocks next to the run: at most the best of them all (one epoch counts in --quick)
        assert figures[f"end_to_end{suffix}_fraction_of_step"] >= (
            figures[f"end_to_end{suffix}_img_s"] / figures["bare_step_img_s"] * (1 - 1e-9)
        )
    assert figures["end_to_end_precision"] == alexnet.default_precision()
    assert figures["prepare_hours_imagenet_train"] == pytest.approx(
        1_281_167 / (figures["prepare_img_s_per_core"] * figures["cores"]) / 3600
    )
    assert figures["cores"] == os.cpu_count() and figures["cpu"]


def test_bench_pipeline_figures_on_prepared_shards_and_decode_count(prepared_data, tmp_path):
    """Prepared shards given: the prepared figures only (no files to prepare or open with PIL); decoding-only
    counts the images that decode, on whole shards."""
    bench = script_module(os.path.join("benchmarks", "bench.py"))
    figures = bench.measure_pipelines(prepared_data, str(tmp_path), bench.QUICK)
    assert set(figures) == {
        "pipeline_prepared_img_s_per_core",
        "decode_only_prepared_img_s_per_core",
        "pipeline_prepared_fraction_of_decode",
    }
    assert all(value > 0 for value in figures.values())
    good = tf.io.encode_jpeg(tf.zeros((40, 30, 3), tf.uint8)).numpy()
    decoded = bench.one_pass(bench.decoded(tf.data.Dataset.from_tensor_slices([good, good[:200], b"text", good])))
    assert decoded()[0] == decoded()[0] == 2


def test_bench_rates_of_runs_that_time_themselves_take_their_own_seconds():
    bench = script_module(os.path.join("benchmarks", "bench.py"))
    batches = bench.one_pass(tf.data.Dataset.range(12).batch(5).map(lambda batch: (batch, batch)))
    assert [batches()[0], batches()[0]] == [12, 12]  # every call reads one whole pass, batches counting their items
    rates = bench.timed_rounds({"self-timed": lambda: (10, 2.0), "timed": lambda: time.sleep(0.05) or 10}, 2)
    assert rates["self-timed"] == [5.0, 5.0]
    assert all(20 < rate < 10 / 0.05 for rate in rates["timed"])  # timed around the call, sleep included
