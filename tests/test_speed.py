"""The fast paths keep the semantics of the reference ones; the benchmark produces all its figures."""

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import alexnet
from alexnet_tf import preprocessing, training
from benchmarks import bench, measuring, pipelines, steps
from conftest import ROOT, SCRIPT_ENV


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
    assert steps.training_flops(model, keras.layers.Conv2D) == conv_training
    assert steps.training_flops(model) == conv_training + 3 * dense_forward
    assert steps.training_flops(model, keras.layers.Dense) == 3 * dense_forward


def test_bench_ratios_pair_the_rounds_and_rates_take_the_best():
    """One side's fast moment does not make a ratio: it is the median of the two sides' ratios within each round
    (here 1.0 where the ratio of the best rates is 0.5); warm-up rounds run untimed."""
    rates = {"pipeline": [20.0, 30.0, 10.0], "decode": [20.0, 60.0, 10.0]}
    assert measuring.paired_ratio(rates, "pipeline", "decode") == 1.0
    assert measuring.best_of(rates) == {"pipeline": 30.0, "decode": 60.0}
    calls = []
    runs = {name: lambda name=name: calls.append(name) or 1000 for name in ("pipeline", "decode")}
    rates = measuring.timed_rounds(runs, rounds=3, warmup=1)
    assert calls == ["pipeline", "decode"] * 4
    assert [len(values) for values in rates.values()] == [3, 3] and all(rate > 0 for rate in rates["decode"])


# Rates of three rounds in which each ratio's median over the rounds differs from the ratio of the two sides' best
# rates, and from the mean of the rounds' ratios: only pairing the rounds and taking the median gives the figures.
PIPELINE_RATES = {
    "pipeline_img_s_per_core": [20.0, 30.0, 10.0],
    "decode_only_img_s_per_core": [20.0, 60.0, 10.0],  # ratios 1, 0.5, 1: median 1, bests 0.5
    "pil_img_s_per_core": [10.0, 10.0, 20.0],  # ratios 2, 3, 0.5: median 2, bests 1.5
    "pipeline_prepared_img_s_per_core": [40.0, 10.0, 20.0],
    "decode_only_prepared_img_s_per_core": [100.0, 20.0, 10.0],  # ratios 0.4, 0.5, 2: median 0.5, bests 0.4
}
TRAINING_RATES = {
    "train_fp32_img_s": [10.0, 20.0, 5.0],
    "matmul_fp32_gflop_s": [100.0, 400.0, 25.0],  # train: 0.1, 0.05, 0.2 images per GFLOP: median 0.1
    "conv_fp32_gflop_s": [50.0, 100.0, 20.0],  # 0.5, 0.25, 0.8 of the matmul: median 0.5, bests 0.25
    "train_groups2_fp32_img_s": [8.0, 10.0, 5.0],  # 0.8, 0.5, 1 of one tower: median 0.8, bests 0.5
    "train_bf16_img_s": [30.0, 20.0, 10.0],  # 3, 1, 2 of float32: median 2, bests 1.5
    "matmul_bf16_gflop_s": [300.0, 100.0, 50.0],  # train: 0.1, 0.2, 0.2 images per GFLOP: median 0.2
    "conv_bf16_gflop_s": [60.0, 80.0, 10.0],  # 0.2, 0.8, 0.2 of the matmul: median 0.2, bests 0.27
    "train_groups2_bf16_img_s": [15.0, 24.0, 10.0],  # 0.5, 1.2, 1 of one tower: median 1, bests 0.8
}


def test_bench_derives_each_ratio_as_the_median_of_the_rounds_paired():
    assert bench.pipeline_figures(PIPELINE_RATES) == pytest.approx(
        {
            "pipeline_img_s_per_core": 30.0,
            "decode_only_img_s_per_core": 60.0,
            "pil_img_s_per_core": 20.0,
            "pipeline_prepared_img_s_per_core": 40.0,
            "decode_only_prepared_img_s_per_core": 100.0,
            "pipeline_fraction_of_decode": 1.0,
            "pipeline_speedup_vs_pil": 2.0,
            "pipeline_prepared_fraction_of_decode": 0.5,
            "pipeline_speedup_vs_pil_prepared": 1.0,
        }
    )
    prepared_only = {name: rates for name, rates in PIPELINE_RATES.items() if "prepared" in name}
    assert bench.pipeline_figures(prepared_only) == pytest.approx(  # the ratios whose two sides were timed
        {
            "pipeline_prepared_img_s_per_core": 40.0,
            "decode_only_prepared_img_s_per_core": 100.0,
            "pipeline_prepared_fraction_of_decode": 0.5,
        }
    )
    assert bench.training_figures(TRAINING_RATES, flops_per_image=2e9) == pytest.approx(
        {
            "train_flops_per_image": 2e9,
            **{name: max(rates) for name, rates in TRAINING_RATES.items()},
            "conv_fp32_fraction_of_matmul_peak": 0.5,
            "train_fp32_fraction_of_matmul_peak": 0.1 * 2,  # images per GFLOP times the GFLOPs of an image
            "train_groups2_fp32_vs_single": 0.8,
            "conv_bf16_fraction_of_matmul_peak": 0.2,
            "train_bf16_fraction_of_matmul_peak": 0.2 * 2,
            "train_groups2_bf16_vs_single": 1.0,
            "bf16_speedup_over_fp32": 2.0,
        }
    )


def test_bench_derives_train_py_s_figures_from_its_epochs_after_the_first_and_the_blocks_around_it():
    runs = {
        "": ([5.0, 40.0, 30.0, 35.0], 0.25),
        "_prepared": ([90.0, 50.0, 45.0, 20.0], 0.5),  # a first epoch faster than the rest does not count either
    }
    bare_blocks = [[50.0, 60.0], [40.0, 80.0], [70.0, 100.0]]  # before, between and after the two runs
    figures = bench.end_to_end_figures("bf16", runs, bare_blocks)
    assert figures.pop("end_to_end_precision") == "bf16"
    assert figures == pytest.approx(
        {
            "end_to_end_img_s": 40.0,
            "end_to_end_validation_seconds": 0.25,
            "end_to_end_fraction_of_step": 35.0 / 55.0,  # median of 40, 30, 35 over that of 50, 60, 40, 80
            "end_to_end_prepared_img_s": 50.0,
            "end_to_end_prepared_validation_seconds": 0.5,
            "end_to_end_prepared_fraction_of_step": 45.0 / 75.0,  # median of 50, 45, 20 over that of 40, 80, 70, 100
            "bare_step_img_s": 100.0,
        }
    )


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_with_float32_logits_and_finite_loss(precision, training_config):
    # 64 pixels, the least that pool5 takes: CPUs have no fast fp16 kernels
    config = training_config(num_classes=4, image_size=64, lr=0.001, batch_size=1, precision=precision)
    model, _, _ = training.build_training(config)
    images = np.random.default_rng(0).normal(0, 50, (1, 64, 64, 3)).astype(np.float32)
    losses = [model.train_on_batch(images, np.array([2]))[0] for _ in range(2)]
    assert model(images).dtype == tf.float32
    assert model.get_layer("fc7").compute_dtype == alexnet.PRECISIONS[precision].split("_")[1]
    assert all(np.isfinite(losses))
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left as it was


@pytest.mark.slow
def test_bench_quick_writes_every_figure(tiny_data, tmp_path):
    """The command of the clone's README, nothing installed, with --data-dir of the user's own class folders: the
    pipeline figures on those, the rest on generated data; every figure written, each of its kind and in a
    plausible range (--quick times one round: how the ratios are derived is the test above's)."""
    folders = tmp_path / "my_classes"
    train_dir = os.path.join(tiny_data, "ILSVRC2012_img_train")
    for wnid in sorted(os.listdir(train_dir))[:3]:
        shutil.copytree(os.path.join(train_dir, wnid), folders / f"class_{wnid}")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--quick", "--data-dir", folders, "--json", tmp_path / "bench.json"],
        cwd=ROOT,
        env={name: value for name, value in SCRIPT_ENV.items() if name != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert re.findall(r"^Measuring .+ \(part (\d) of 3\) \.\.\.$", result.stderr, re.M) == ["1", "2", "3"]
    figures = json.loads((tmp_path / "bench.json").read_text())
    rates = {  # images/s, GFLOP/s
        *PIPELINE_RATES,
        "pipeline_eval_img_s_per_core",
        "prepare_img_s_per_core",
        *TRAINING_RATES,
        "end_to_end_img_s",
        "end_to_end_prepared_img_s",
        "bare_step_img_s",
    }
    ratios = {
        "pipeline_fraction_of_decode",
        "pipeline_speedup_vs_pil",
        "pipeline_prepared_fraction_of_decode",
        "pipeline_speedup_vs_pil_prepared",
        "conv_fp32_fraction_of_matmul_peak",
        "conv_bf16_fraction_of_matmul_peak",
        "train_fp32_fraction_of_matmul_peak",
        "train_bf16_fraction_of_matmul_peak",
        "train_groups2_fp32_vs_single",
        "train_groups2_bf16_vs_single",
        "bf16_speedup_over_fp32",
        "end_to_end_fraction_of_step",
        "end_to_end_prepared_fraction_of_step",
    }
    seconds = {"end_to_end_validation_seconds", "end_to_end_prepared_validation_seconds"}
    others = {
        "cpu",
        "cores",
        "pipeline_data",
        "prepare_hours_imagenet_train",
        "train_flops_per_image",
        "step_overhead_ms",
        "end_to_end_precision",
    }
    assert set(figures) == rates | ratios | seconds | others
    for name in rates | ratios | seconds:
        assert isinstance(figures[name], float) and math.isfinite(figures[name]), (name, figures[name])
    assert all(0 < figures[name] < 1e6 for name in rates), figures
    assert all(0 < figures[name] < 100 for name in ratios), figures
    assert all(0 < figures[name] < 60 for name in seconds), figures
    assert 0 <= figures["step_overhead_ms"] < 100
    assert figures["train_flops_per_image"] == pytest.approx(6.6e9, rel=0.05)
    assert figures["prepare_hours_imagenet_train"] == pytest.approx(
        1_281_167 / (figures["prepare_img_s_per_core"] * figures["cores"]) / 3600
    )
    assert figures["end_to_end_precision"] == alexnet.default_precision()
    assert figures["pipeline_data"] == str(folders)
    assert figures["cores"] == os.cpu_count() and isinstance(figures["cpu"], str) and figures["cpu"]


def test_bench_pipeline_figures_on_prepared_shards_and_decode_count(prepared_data, tmp_path):
    """Prepared shards given: the prepared figures only (no files to prepare or open with PIL); decoding-only
    counts the images that decode, on whole shards."""
    figures = bench.measure_pipelines(prepared_data, str(tmp_path), bench.QUICK)
    assert set(figures) == {
        "pipeline_prepared_img_s_per_core",
        "decode_only_prepared_img_s_per_core",
        "pipeline_prepared_fraction_of_decode",
    }
    assert all(value > 0 for value in figures.values())
    good = tf.io.encode_jpeg(tf.zeros((40, 30, 3), tf.uint8)).numpy()
    decoded = pipelines.one_pass(
        pipelines.decoded(tf.data.Dataset.from_tensor_slices([good, good[:200], b"text", good]))
    )
    assert decoded()[0] == decoded()[0] == 2


def test_bench_rates_of_runs_that_time_themselves_take_their_own_seconds():
    batches = pipelines.one_pass(tf.data.Dataset.range(12).batch(5).map(lambda batch: (batch, batch)))
    assert [batches()[0], batches()[0]] == [12, 12]  # every call reads one whole pass, batches counting their items
    rates = measuring.timed_rounds({"self-timed": lambda: (10, 2.0), "timed": lambda: time.sleep(0.05) or 10}, 2)
    assert rates["self-timed"] == [5.0, 5.0]
    assert all(20 < rate < 10 / 0.05 for rate in rates["timed"])  # timed around the call, sleep included
