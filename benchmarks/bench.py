"""Measures what bounds an AlexNet run, in one process tree and one run: training images per second per CPU core
through our input pipeline against decoding alone and a plain PIL+numpy loader on the same images, --prepare's
throughput, the training step in float32 and bf16 against dense matmuls measured alongside, and train.py end to end
against its bare step. The pipeline figures are on generated ImageNet-like JPEGs, or on a sample of yours:

    python -m benchmarks.bench --data-dir ILSVRC2012 --json bench.json
"""

import alexnet_tf  # noqa: F401  (first: TensorFlow's quiet start-up)

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

import alexnet
import data_reader
from alexnet_tf import (
    errors,
    input_pipeline,
    prepared_shards,
    preprocessing,
    run_folder,
    sample_dataset,
    startup,
    training,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the clone, whose train.py is measured

# The generated ImageNet-like JPEGs: photographic content, 300-1600 px wide, about 500x375 on average
IMAGES = 320
WIDTH_MEDIAN = 480  # log-normal widths around this, clipped to WIDTH_RANGE
WIDTH_RANGE = (300, 1600)
JPEG_QUALITY = 90
GRAYSCALE_FRACTION = 0.05

# This VM's cores swing by 1.5-2x within a second (measured: decoding the same 128 JPEGs over and over ran anywhere
# from 150 to 390 images/s). A rate is the best of its rounds; a ratio is the median of its two sides' ratio within
# each round, the sides timed moments apart: the ratio of two bests compares each side's luckiest moment (it gave
# the pipeline 0.56-1.04 of decoding where paired rounds gave 0.85-0.99).
PIPELINE_ROUNDS = 12  # timed rounds of the pipeline figures, each one pass over the images, after one warm-up
PIPELINE_BATCH = 32
TRAIN_BATCH = 128  # the paper's
TRAIN_STEPS = 5  # timed rounds of a step of each model and a matmul, after one warm-up of each
OVERHEAD_REPEATS = 5  # fit lengths timed for step_overhead_ms, the shortest of each counting
MATMUL_SIZE = 4096
BARE_BLOCKS = 2  # timed blocks of END_TO_END_STEPS bare steps before, between and after train.py's two runs
OVERHEAD_STEPS = 2000  # steps of a tiny model's fit, to measure what train.py adds to each step
END_TO_END_STEPS = 16  # steps in each of train.py's epochs (two calls of 8 steps)
END_TO_END_EPOCHS = 4  # the epochs after the first (which traces and compiles) count
IMAGENET_TRAIN_IMAGES = 1_281_167  # ILSVRC2012's training set, for the hours --prepare would take

QUICK = {
    "IMAGES": 24,
    "PIPELINE_BATCH": 8,
    "TRAIN_BATCH": 8,
    "TRAIN_STEPS": 1,
    "MATMUL_SIZE": 512,
    "BARE_BLOCKS": 1,
    "END_TO_END_STEPS": 2,
    "END_TO_END_EPOCHS": 2,
    "PREPARE_REPEATS": 1,
    "PIPELINE_ROUNDS": 1,
    "OVERHEAD_REPEATS": 3,
    "OVERHEAD_STEPS": 100,
}
PREPARED_TRAIN_SHARDS = 8
PREPARE_REPEATS = 2  # preparing is slower and steadier than reading


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=errors.HelpFormatter)
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that every figure is produced")
    parser.add_argument(
        "--data-dir",
        help="measure the input pipeline and --prepare on a sample of these training images (an ILSVRC2012 folder, "
        "your own class folders, or prepared shards) instead of generated ones; the training step and train.py "
        "end to end still run on generated data (default: generated ImageNet-like JPEGs)",
    )
    parser.add_argument("--part", choices=("all", "pipeline"), default="all", help=argparse.SUPPRESS)
    return parser


def main(args):
    sizes = {name: QUICK[name] if args.quick else globals()[name] for name in QUICK}
    if args.data_dir:
        data_reader.load_classes(args.data_dir)  # a folder that is not a dataset is one line, before any work
    with tempfile.TemporaryDirectory() as scratch:
        if args.part == "pipeline":
            results = measure_pipelines(args.data_dir, scratch, sizes)
        else:
            generated = os.path.join(scratch, "ILSVRC2012")
            make_photo_dataset(generated, sizes["IMAGES"])
            prepared_shards.prepare(
                generated, generated + "-prepared", train_shards=PREPARED_TRAIN_SHARDS, val_shards=1
            )
            results = {
                "cpu": cpu_name(),
                "cores": os.cpu_count(),
                "pipeline_data": os.path.abspath(args.data_dir) if args.data_dir else "generated",
                **run_pinned_to_one_core(args, args.data_dir or generated),
            }
            if "prepare_img_s_per_core" in results:
                machine_rate = results["prepare_img_s_per_core"] * results["cores"]
                results["prepare_hours_imagenet_train"] = IMAGENET_TRAIN_IMAGES / machine_rate / 3600
            results.update(measure_training(sizes))
            results.update(measure_end_to_end(generated, scratch, sizes))
            print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


# ------------------------------------------------------------------------------------------------- data


def make_photo_dataset(data_dir, images):
    """The sample's ILSVRC2012 layout, with photograph-like JPEGs: smooth shapes at several scales plus grain."""
    per_class = max(1, images // len(sample_dataset.LEAVES))
    sample_dataset.make_sample(data_dir, train_per_class=per_class, val_per_class=1, draw=photo_like)


def photo_like(label, num_classes, rng):
    """Smooth random shapes at three scales on a class tint, plus grain: JPEG-compresses like a photograph."""
    width = int(np.clip(rng.lognormal(np.log(WIDTH_MEDIAN), 0.3), *WIDTH_RANGE))
    height = int(width * rng.choice([0.75, 0.667, 1.0, 1.333], p=[0.6, 0.2, 0.1, 0.1]))
    pixels = 128 + 40 * np.cos(2 * np.pi * (label / num_classes + np.array([0, 1 / 3, 2 / 3])))
    for cells, amplitude in ((3, 50), (12, 25), (48, 15), (160, 16)):
        grid = rng.normal(0, amplitude, (cells, cells, 3)).astype(np.float32)
        pixels = pixels + np.stack(
            [np.asarray(Image.fromarray(grid[..., c]).resize((width, height), Image.BICUBIC)) for c in range(3)],
            axis=-1,
        )
    pixels = pixels + rng.normal(0, 8, pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image.convert("L") if rng.random() < GRAYSCALE_FRACTION else image


# ---------------------------------------------------------------------------------------------- pipelines


def run_pinned_to_one_core(args, data_dir):
    """The pipeline figures, measured in a child process that may use one core only, so that they are per core."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--part",
            "pipeline",
            "--data-dir",
            data_dir,
            "--json",
            out.name,
        ] + (["--quick"] if args.quick else [])
        subprocess.run(
            command,
            check=True,
            env=child_env(),
            preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}),
        )
        return json.load(open(out.name))


def child_env():
    """This process's environment, less the TensorFlow log level that startup.py set here unless the user had: a
    child given it would take it for the user's and show TensorFlow's start-up lines."""
    return {name: value for name, value in os.environ.items() if not (startup.QUIET and name == "TF_CPP_MIN_LOG_LEVEL")}


PIPELINE_RATIOS = {
    "pipeline_fraction_of_decode": ("pipeline_img_s_per_core", "decode_only_img_s_per_core"),
    "pipeline_speedup_vs_pil": ("pipeline_img_s_per_core", "pil_img_s_per_core"),
    "pipeline_prepared_fraction_of_decode": ("pipeline_prepared_img_s_per_core", "decode_only_prepared_img_s_per_core"),
    "pipeline_speedup_vs_pil_prepared": ("pipeline_prepared_img_s_per_core", "pil_img_s_per_core"),
}


def measure_pipelines(data_dir, scratch, sizes):
    """The input pipeline's figures on a sample of `data_dir`'s training images. Image files are also prepared (the
    sample, into shards in `scratch`, timed), and the pipelines on the files and on those shards timed in the same
    rounds."""
    synsets = data_reader.load_classes(data_dir)
    split = data_reader.read_split(data_dir, synsets, "train")
    spec = preprocessing.Preprocessing(mean=(120.0, 115.0, 105.0))
    results, runs = {}, {}
    if split.prepared:
        shards = whole_shards(split, sizes["IMAGES"])
    else:
        files = random_sample(split, sizes["IMAGES"])
        shards, results["prepare_img_s_per_core"] = prepare_sample(files, data_dir, synsets, scratch, sizes)
        runs.update(folder_pipelines(files, spec, sizes))
    runs.update(prepared_pipelines(shards, spec, sizes))
    rates = timed_rounds(runs, sizes["PIPELINE_ROUNDS"], warmup=1)
    results.update(best_of(rates))
    for name, (numerator, denominator) in PIPELINE_RATIOS.items():
        if numerator in rates and denominator in rates:
            results[name] = paired_ratio(rates, numerator, denominator)
    return results


def random_sample(split, count):
    order = np.random.default_rng(0).permutation(split.num_images)[:count]
    return data_reader.Split([split.paths[i] for i in order], [split.labels[i] for i in order], None)


def whole_shards(split, count):
    """The first shards holding at least `count` records: a pipeline reads shards whole."""
    shards = int(np.searchsorted(np.cumsum(split.shard_sizes), count)) + 1
    return split._replace(paths=split.paths[:shards], shard_sizes=split.shard_sizes[:shards])


def folder_pipelines(files, spec, sizes):
    """The timed runs on image files, for timed_rounds: each one pass over `files`."""
    batch = sizes["PIPELINE_BATCH"]
    train = training_pipeline(files, spec, sizes)
    evaluation = input_pipeline.eval_dataset(files, spec=spec, batch_size=batch, crops="random", k_crops=5)
    encoded = tf.data.Dataset.from_tensor_slices(files.paths).map(tf.io.read_file)
    rng = np.random.default_rng(0)
    return {
        "pipeline_img_s_per_core": one_pass(train),
        "decode_only_img_s_per_core": one_pass(decoded(encoded)),
        "pipeline_eval_img_s_per_core": one_pass(evaluation),
        "pil_img_s_per_core": lambda: pil_reference(files.paths, spec.mean, batch, rng),
    }


def prepare_sample(files, data_dir, synsets, scratch, sizes):
    """The sample written as PREPARED_TRAIN_SHARDS shards by --prepare's own shard writer: (the shards as a split,
    images/s)."""
    entries = [(os.path.relpath(path, data_dir), label) for path, label in zip(files.paths, files.labels)]
    bounds = np.linspace(0, len(entries), PREPARED_TRAIN_SHARDS + 1).astype(int)
    paths = [os.path.join(scratch, f"train-{index:05d}") for index in range(PREPARED_TRAIN_SHARDS)]
    written = []  # the records of each shard: its images less the unreadable ones

    def prepare():
        quiet = keras.utils.Progbar(len(entries), verbose=0)
        written[:] = [
            int(end - start) - len(prepared_shards.write_shard(data_dir, entries[start:end], synsets, path, quiet))
            for path, start, end in zip(paths, bounds[:-1], bounds[1:])
        ]
        return len(entries)

    rate = max(timed_rounds({"prepare": prepare}, sizes["PREPARE_REPEATS"])["prepare"])
    return data_reader.Split(paths, None, written), rate


def prepared_pipelines(shards, spec, sizes):
    """The timed runs on prepared shards, for timed_rounds: each one pass over `shards`."""
    train = training_pipeline(shards, spec, sizes)
    encoded = (
        tf.data.TFRecordDataset(shards.paths)
        .batch(256)
        .map(lambda records: prepared_shards.parse_records(records)[0])
        .unbatch()
    )
    return {
        "pipeline_prepared_img_s_per_core": one_pass(train),
        "decode_only_prepared_img_s_per_core": one_pass(decoded(encoded)),
    }


def training_pipeline(split, spec, sizes):
    batch = sizes["PIPELINE_BATCH"]
    return input_pipeline.train_dataset(
        split,
        spec=spec,
        batch_size=batch,
        steps_per_epoch=split.num_images // batch,
        first_epoch=0,
        epochs=1,
        augment="paper",
        deterministic=False,
    )


def decoded(encoded_images):
    """The shapes of a dataset of encoded images, each image decoded whole (libjpeg for JPEGs), no resize, no crop:
    the limit of any pipeline reading these files. Images that do not decode are left out."""
    return encoded_images.map(
        lambda encoded: tf.shape(preprocessing.decode_rgb(encoded)), num_parallel_calls=tf.data.AUTOTUNE
    ).ignore_errors()


def one_pass(dataset):
    """A run for timed_rounds that reads `dataset` to its end and times itself from the first request to the last
    element: (images, seconds), a batch counting its images. Creating the iterator (about 0.3 s for the prepared
    shards' pipeline here) and dropping it (which waits for its autotuning thread) stay out of the time: train.py
    pays them once a run, not once a pass, and counted in every pass of 320 images they had halved the prepared
    shards' rate. An iterator kept across the rounds would not do: its threads keep working between its passes."""

    def read():
        images = iter(dataset)
        count = 0
        with startup.decoder_noise_held_back():
            start = time.perf_counter()
            for element in images:
                count += int(element[0].shape[0]) if isinstance(element, tuple) else 1
            return count, time.perf_counter() - start

    return read


def timed_rounds(runs, rounds, warmup=0):
    """The items/s of each of `runs` (name: a call that returns how many items it did, or that and the seconds its
    work took, when it times itself) in each of `rounds` rounds, each round calling every run once, after `warmup`
    rounds left untimed (a tf.data pipeline's first pass traces and autotunes): {name: [rate of each round]}."""
    rates = {name: [] for name in runs}
    for round_number in range(warmup + rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            done = run()
            items, seconds = done if isinstance(done, tuple) else (done, time.perf_counter() - start)
            if round_number >= warmup:
                rates[name].append(items / seconds)
    return rates


def best_of(rates):
    return {name: max(values) for name, values in rates.items()}


def paired_ratio(rates, numerator, denominator):
    """The median over the rounds of `timed_rounds` of numerator / denominator within each round."""
    return float(np.median(np.divide(rates[numerator], rates[denominator])))


def pil_reference(paths, mean, batch, rng):
    """The same work as the training pipeline with augment=flip, the way a plain PIL+numpy loader does it."""
    for first in range(0, len(paths) - batch + 1, batch):
        crops = []
        for path in paths[first : first + batch]:
            with Image.open(path) as image:
                image = image.convert("RGB")
                scale = preprocessing.RESIZE_SHORTER / min(image.size)
                image = image.resize(
                    (max(256, round(image.width * scale)), max(256, round(image.height * scale))), Image.BILINEAR
                )
            left = rng.integers(0, image.width - preprocessing.CROP_SIZE + 1)
            top = rng.integers(0, image.height - preprocessing.CROP_SIZE + 1)
            crop = np.asarray(
                image.crop((left, top, left + preprocessing.CROP_SIZE, top + preprocessing.CROP_SIZE)), np.float32
            )
            crops.append((crop[:, ::-1] if rng.random() < 0.5 else crop) - mean)
        np.stack(crops)
    return len(paths) // batch * batch


# ----------------------------------------------------------------------------------------------- training


def measure_training(sizes):
    """The training steps, convolutions and matmuls of both precisions, all timed in the same rounds (each model keeps
    the precision it was built with), each ratio's two sides next to each other."""
    flops_per_image = training_flops(alexnet.alexnet())
    runs = {}
    for precision, key, dtype in (("float32", "fp32", tf.float32), ("bf16", "bf16", tf.bfloat16)):
        runs[f"train_{key}_img_s"] = training_step(precision, sizes)
        runs[f"matmul_{key}_gflop_s"] = matmul(dtype, sizes)
        runs[f"conv_{key}_gflop_s"] = convolutions(precision, sizes)
        runs[f"train_groups2_{key}_img_s"] = training_step(precision, sizes, groups=2)
    alexnet.set_precision("float32")
    rates = timed_rounds(runs, sizes["TRAIN_STEPS"])
    results = {"train_flops_per_image": flops_per_image, **best_of(rates)}
    for key in ("fp32", "bf16"):
        matmul_rate = f"matmul_{key}_gflop_s"
        results[f"conv_{key}_fraction_of_matmul_peak"] = paired_ratio(rates, f"conv_{key}_gflop_s", matmul_rate)
        results[f"train_{key}_fraction_of_matmul_peak"] = (
            paired_ratio(rates, f"train_{key}_img_s", matmul_rate) * flops_per_image / 1e9
        )
        results[f"train_groups2_{key}_vs_single"] = paired_ratio(
            rates, f"train_groups2_{key}_img_s", f"train_{key}_img_s"
        )
    results["bf16_speedup_over_fp32"] = paired_ratio(rates, "train_bf16_img_s", "train_fp32_img_s")
    results["step_overhead_ms"] = step_overhead_ms(sizes)
    return results


def training_step(precision, sizes, groups=1, batch=None):
    """One step of train.py's compiled training at `batch` (default TRAIN_BATCH) on synthetic tensors, as a call
    for timed_rounds; built and run once here."""
    batch = batch or sizes["TRAIN_BATCH"]
    config = {
        "architecture": {"num_classes": 1000, "groups": groups, "dropout": 0.5},
        "settings": {
            "seed": 0,
            "lr": training.LEARNING_RATE,
            "momentum": training.MOMENTUM,
            "weight_decay": training.WEIGHT_DECAY,
            "deterministic": False,
            "precision": precision,
            "batch_size": batch,
        },
    }
    model, _, _ = training.build_training(config)
    images = tf.random.normal((batch, 224, 224, 3), stddev=50)
    labels = tf.random.uniform((batch,), 0, 1000, tf.int32)
    model.train_on_batch(images, labels)

    def train_step():
        model.train_on_batch(images, labels)
        return batch

    return train_step


def step_overhead_ms(sizes):
    """What train.py's Model.fit costs a step beyond the compiled steps themselves, in ms: a model too small to take
    any time trained by fit with train.py's callbacks, progress bar and steps per call, against the same compiled
    calls in a bare loop. The difference of two fit lengths cancels each fit's fixed costs (start, the epoch's
    checkpoint)."""
    steps = sizes["OVERHEAD_STEPS"]
    config = {
        "settings": {"batch_size": 2, "save_every": 10**9 * training.STEPS_PER_EXECUTION},
        "unreadable": {"train": []},
    }
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    model.compile(
        optimizer=training.PaperSGD(learning_rate=0.01),
        metrics=["accuracy"],
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=training.STEPS_PER_EXECUTION,
    )
    data = tf.data.Dataset.from_tensors((tf.zeros((2, 8)), tf.zeros((2,), tf.int32))).repeat()
    checkpoint = tf.train.Checkpoint(model=model)

    def fit_seconds(count):
        with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(io.StringIO()):
            manager = run_folder.checkpoint_manager(checkpoint, folder)
            callbacks = training.callbacks(
                config=config, plateau=keras.callbacks.Callback(), manager=manager, log_dir=os.path.join(folder, "logs")
            )
            start = time.perf_counter()
            model.fit(data, epochs=1, steps_per_epoch=count, callbacks=callbacks, verbose=1, shuffle=False)
            return time.perf_counter() - start

    def bare_seconds(count):
        iterator = iter(data)
        start = time.perf_counter()
        for _ in range(count // training.STEPS_PER_EXECUTION):
            logs = model.train_function(iterator)
        float(logs["loss"])
        return time.perf_counter() - start

    fit_seconds(2)
    repeats = range(sizes["OVERHEAD_REPEATS"])
    fit_per_step = (min(fit_seconds(2 * steps) for _ in repeats) - min(fit_seconds(steps) for _ in repeats)) / steps
    bare_per_step = min(bare_seconds(steps) for _ in repeats) / steps
    return 1000 * max(fit_per_step - bare_per_step, 0.0)


def training_flops(model, layer_types=(keras.layers.Conv2D, keras.layers.Dense)):
    """FLOPs of one training image in the layers of `layer_types`, counted from their shapes: a multiply-add is 2
    FLOPs; the backward pass costs the forward's twice (gradients of weights and of inputs), less the input
    gradient of the model's first layer."""
    counted = [layer for layer in model.layers if isinstance(layer, layer_types)]
    forward = [forward_flops(layer) for layer in counted]
    return 3 * sum(forward) - (forward[0] if counted[0] is first_weighted_layer(model) else 0)


def forward_flops(layer):
    if isinstance(layer, keras.layers.Conv2D):
        kernel_h, kernel_w, inputs_per_group, filters = layer.kernel.shape
        _, height, width, _ = layer.output.shape
        return 2 * height * width * filters * kernel_h * kernel_w * inputs_per_group
    return 2 * int(np.prod(layer.kernel.shape))


def first_weighted_layer(model):
    return next(layer for layer in model.layers if layer.weights)


def convolutions(precision, sizes):
    """The forward and backward passes of AlexNet's five convolutions (with their bias and ReLU) and nothing else, at
    TRAIN_BATCH on synthetic tensors, as a call for timed_rounds (its items are GFLOPs): the rate the training step
    would reach if its LRN, pooling, dropout, dense layers and update took no time. Run once here."""
    alexnet.set_precision(precision)
    model = alexnet.alexnet()
    batch = sizes["TRAIN_BATCH"]
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    inputs = [tf.cast(tf.random.normal((batch, *layer.input.shape[1:])), layer.compute_dtype) for layer in layers]
    weights = [weight for layer in layers for weight in layer.trainable_weights]
    gflops = batch * training_flops(model, keras.layers.Conv2D) / 1e9

    @tf.function
    def passes():
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = [layer(x) for layer, x in zip(layers, inputs)]
            total = tf.add_n([tf.reduce_sum(tf.cast(y, tf.float32)) for y in outputs])
        gradients = tape.gradient(total, [*inputs[1:], *weights])  # conv1's input gradient is not needed
        return total + tf.add_n([tf.reduce_sum(tf.cast(g, tf.float32)) for g in gradients])

    def run():
        passes().numpy()
        return gflops

    run()
    return run


def matmul(dtype, sizes):
    """One dense MATMUL_SIZE-square matmul, as a call for timed_rounds (its items are GFLOPs); run once here."""
    n = sizes["MATMUL_SIZE"]
    a, b = tf.random.normal((n, n), dtype=tf.float32), tf.random.normal((n, n), dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y)[0, 0], tf.float32)))

    def multiply():
        matmul(a, b).numpy()
        return 2 * n**3 / 1e9

    multiply()
    return multiply


def measure_end_to_end(data_dir, scratch, sizes):
    """train.py's training images/s (its best epoch after the first; the validation pass excluded, and timed apart)
    fed from the generated JPEG folder and from its prepared shards, and the bare compiled step (synthetic tensors,
    no input pipeline) at the same batch and precision, timed as train.py's epochs are, in blocks of as many steps,
    before, between and after the two runs. Each run's fraction of the step is the median of its epochs after the
    first over the median of the blocks just before and after it."""
    precision = alexnet.default_precision()
    bare_step = training_step(precision, sizes, batch=sizes["PIPELINE_BATCH"])

    def bare_epoch():
        return sum(bare_step() for _ in range(sizes["END_TO_END_STEPS"]))

    bare_rates = [timed_rounds({"bare": bare_epoch}, sizes["BARE_BLOCKS"])["bare"]]
    results = {"end_to_end_precision": precision}
    for suffix, data in (("", data_dir), ("_prepared", data_dir + "-prepared")):
        command = [
            sys.executable,
            os.path.join(ROOT, "train.py"),
            "-scratch",
            "--data-dir",
            data,
            "--ckpt-dir",
            os.path.join(scratch, f"ckpt{suffix}"),
            "--log-dir",
            os.path.join(scratch, f"logs{suffix}"),
            "--epochs",
            str(sizes["END_TO_END_EPOCHS"]),
            "--steps-per-epoch",
            str(sizes["END_TO_END_STEPS"]),
            "--batch-size",
            str(sizes["PIPELINE_BATCH"]),
            "--precision",
            precision,
            "--save-every",
            str(10**9),
        ]
        out = subprocess.run(command, capture_output=True, text=True, check=True, env=child_env()).stdout
        epochs = [float(rate) for rate in re.findall(r"images_per_second: ([\d.]+)", out)]
        results[f"end_to_end{suffix}_img_s"] = max(epochs[1:])
        results[f"end_to_end{suffix}_validation_seconds"] = float(re.findall(r"validation_seconds: ([\d.]+)", out)[-1])
        bare_rates.append(timed_rounds({"bare": bare_epoch}, sizes["BARE_BLOCKS"])["bare"])
        results[f"end_to_end{suffix}_fraction_of_step"] = float(
            np.median(epochs[1:]) / np.median(bare_rates[-2] + bare_rates[-1])
        )
    alexnet.set_precision("float32")
    results["bare_step_img_s"] = max(max(rates) for rates in bare_rates)
    return results


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except (OSError, AttributeError):  # be specific: no /proc, or no model name in it
        return "unknown"


def print_table(results):
    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key:<{width}}  {f'{value:,.3g}' if isinstance(value, float) else value}")


if __name__ == "__main__":
    parser = get_args_parser()
    with errors.reported(parser):
        main(parser.parse_args())
