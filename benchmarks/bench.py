"""Measures what bounds an AlexNet run, in one process tree and one run: training images per second per CPU core
through our input pipeline against a plain PIL+numpy loader on the same JPEGs, the training step in float32 and
bf16 against dense matmuls measured alongside, and train.py end to end.

    python benchmarks/bench.py --json bench.json
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import startup  # noqa: E402  (quiets TensorFlow's start-up)
import data_reader  # noqa: E402
import input_pipeline  # noqa: E402
import prepared_shards  # noqa: E402
import preprocessing  # noqa: E402
import sample_dataset  # noqa: E402

# The generated ImageNet-like JPEGs: photographic content, 300-1600 px wide, about 500x375 on average
IMAGES = 320
WIDTH_MEDIAN = 480  # log-normal widths around this, clipped to WIDTH_RANGE
WIDTH_RANGE = (300, 1600)
JPEG_QUALITY = 90
GRAYSCALE_FRACTION = 0.05

REPEATS = 3  # every figure is the best of this many timed runs: this VM's cores swing by ~40% (measured)
PIPELINE_BATCH = 32
PIPELINE_EPOCHS = 4  # passes over the images in each timed run, so that pipeline start-up weighs little
TRAIN_BATCH = 128  # the paper's
TRAIN_STEPS = 3  # timed steps after one warm-up step
MATMUL_SIZE = 4096
MATMUL_REPEATS = 10
OVERHEAD_STEPS = 2000  # steps of a tiny model's fit, to measure what train.py adds to each step
END_TO_END_STEPS = 6  # steps in each of train.py's two epochs; the second one is timed

QUICK = {
    "IMAGES": 24,
    "PIPELINE_BATCH": 8,
    "TRAIN_BATCH": 8,
    "TRAIN_STEPS": 1,
    "MATMUL_SIZE": 512,
    "MATMUL_REPEATS": 2,
    "END_TO_END_STEPS": 2,
    "REPEATS": 1,
    "OVERHEAD_STEPS": 100,
    "PIPELINE_EPOCHS": 1,
}
PREPARED_TRAIN_SHARDS = 8


def get_args_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that every figure is produced")
    parser.add_argument("--work-dir", help="where the generated JPEGs go (default: a temporary folder)")
    parser.add_argument("--part", choices=("all", "pipeline"), default="all", help=argparse.SUPPRESS)
    return parser


def main(args):
    sizes = {name: QUICK[name] if args.quick else globals()[name] for name in QUICK}
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = args.work_dir or os.path.join(scratch, "ILSVRC2012")
        if args.part == "pipeline":
            results = measure_pipelines(data_dir, sizes)
        else:
            make_photo_dataset(data_dir, sizes["IMAGES"])
            prepared_shards.prepare(data_dir, data_dir + "-prepared", train_shards=PREPARED_TRAIN_SHARDS, val_shards=1)
            results = {"cpu": cpu_name(), "cores": os.cpu_count(), **run_pinned_to_one_core(args, data_dir)}
            results.update(measure_training(sizes))
            results.update(measure_end_to_end(data_dir, scratch, sizes))
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
            "--work-dir",
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


def measure_pipelines(data_dir, sizes):
    synsets = data_reader.load_classes(data_dir)
    split = data_reader.read_split(data_dir, synsets, "train")
    prepared = data_reader.read_split(data_dir + "-prepared", synsets, "train")
    spec = preprocessing.Preprocessing(mean=(120.0, 115.0, 105.0))
    batch, repeats, epochs = sizes["PIPELINE_BATCH"], sizes["REPEATS"], sizes["PIPELINE_EPOCHS"]
    steps = split.num_images // batch
    train, train_prepared = (
        input_pipeline.train_dataset(
            data,
            spec=spec,
            batch_size=batch,
            steps_per_epoch=steps,
            first_epoch=0,
            epochs=epochs,
            augment="paper",
            deterministic=False,
        )
        for data in (split, prepared)
    )
    evaluation = input_pipeline.eval_dataset(
        data_reader.Split(split.paths * epochs, split.labels * epochs, None),
        spec=spec,
        batch_size=batch,
        crops="random",
        k_crops=5,
    )
    rng = np.random.default_rng(0)
    results = {
        "pipeline_img_s_per_core": best_rate(lambda: count_images(train), repeats + 1),
        "pipeline_prepared_img_s_per_core": best_rate(lambda: count_images(train_prepared), repeats + 1),
        "pipeline_eval_img_s_per_core": best_rate(lambda: count_images(evaluation), repeats + 1),
        "pil_img_s_per_core": best_rate(lambda: pil_reference(split.paths * epochs, spec.mean, batch, rng), repeats),
    }
    results["pipeline_speedup_vs_pil"] = results["pipeline_img_s_per_core"] / results["pil_img_s_per_core"]
    results["pipeline_speedup_vs_pil_prepared"] = (
        results["pipeline_prepared_img_s_per_core"] / results["pil_img_s_per_core"]
    )
    return results


def best_rate(run, repeats):
    """The best items/s of `repeats` calls of `run`, which returns how many items it did; the first call of a
    tf.data pipeline includes its tracing and autotuning, so pipelines get one call more."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        items = run()
        rates.append(items / (time.perf_counter() - start))
    return max(rates)


def count_images(dataset):
    return sum(int(images.shape[0]) for images, _ in dataset)


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
    import tensorflow as tf

    import alexnet
    import training

    results = {"train_flops_per_image": training_flops(alexnet.alexnet())}
    for precision in ("float32", "bf16"):
        key = "fp32" if precision == "float32" else "bf16"
        results[f"train_{key}_img_s"] = training_step_rate(tf, training, precision, sizes)
        results[f"train_groups2_{key}_img_s"] = training_step_rate(tf, training, precision, sizes, groups=2)
        groups2, single = results[f"train_groups2_{key}_img_s"], results[f"train_{key}_img_s"]
        results[f"train_groups2_{key}_vs_single"] = groups2 / single
        results[f"matmul_{key}_gflop_s"] = matmul_gflops(tf, tf.float32 if key == "fp32" else tf.bfloat16, sizes)
        results[f"train_{key}_fraction_of_matmul_peak"] = (
            results[f"train_{key}_img_s"] * results["train_flops_per_image"] / 1e9 / results[f"matmul_{key}_gflop_s"]
        )
    alexnet.set_precision("float32")
    results["bf16_speedup_over_fp32"] = results["train_bf16_img_s"] / results["train_fp32_img_s"]
    results["step_overhead_ms"] = step_overhead_ms(tf, training, sizes)
    return results


def training_step_rate(tf, training, precision, sizes, groups=1):
    """Images/s of train.py's compiled training step at TRAIN_BATCH, on synthetic tensors."""
    batch = sizes["TRAIN_BATCH"]
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

    return best_rate(train_step, sizes["TRAIN_STEPS"])


def step_overhead_ms(tf, training, sizes):
    """What train.py's Model.fit costs a step beyond the compiled steps themselves, in ms: a model too small to take
    any time trained by fit with train.py's callbacks, progress bar and steps per call, against the same compiled
    calls in a bare loop. The difference of two fit lengths cancels each fit's fixed costs (start, the epoch's
    checkpoint)."""
    import contextlib
    import io

    import keras

    import run_folder

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
            model.fit(data, epochs=1, steps_per_epoch=count, callbacks=callbacks, verbose=1)
            return time.perf_counter() - start

    def bare_seconds(count):
        iterator = iter(data)
        start = time.perf_counter()
        for _ in range(count // training.STEPS_PER_EXECUTION):
            logs = model.train_function(iterator)
        float(logs["loss"])
        return time.perf_counter() - start

    fit_seconds(2)
    repeats = range(sizes["REPEATS"] + 2)
    fit_per_step = (min(fit_seconds(2 * steps) for _ in repeats) - min(fit_seconds(steps) for _ in repeats)) / steps
    bare_per_step = min(bare_seconds(steps) for _ in repeats) / steps
    return 1000 * max(fit_per_step - bare_per_step, 0.0)


def training_flops(model):
    """FLOPs of one training image, counted from the layer shapes: a multiply-add is 2 FLOPs; the backward pass
    costs the forward's twice (gradients of weights and of inputs), less the input gradient of the first layer."""
    import keras

    forward, first = 0, None
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel_h, kernel_w, inputs_per_group, filters = layer.kernel.shape
            _, height, width, _ = layer.output.shape
            flops = 2 * height * width * filters * kernel_h * kernel_w * inputs_per_group
        elif layer.__class__.__name__ == "Dense":
            flops = 2 * int(np.prod(layer.kernel.shape))
        else:
            continue
        forward += flops
        first = flops if first is None else first
    return 3 * forward - first


def matmul_gflops(tf, dtype, sizes):
    n = sizes["MATMUL_SIZE"]
    a, b = tf.random.normal((n, n), dtype=tf.float32), tf.random.normal((n, n), dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y)[0, 0], tf.float32)))

    def multiply():
        matmul(a, b).numpy()
        return 2 * n**3

    multiply()
    return best_rate(multiply, sizes["MATMUL_REPEATS"]) / 1e9


def measure_end_to_end(data_dir, scratch, sizes):
    """Training images/s of train.py's second epoch (its validation pass excluded, and timed apart), fed by the
    real pipeline from the generated JPEG folder."""
    command = [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        "-scratch",
        "--data-dir",
        data_dir,
        "--ckpt-dir",
        os.path.join(scratch, "ckpt"),
        "--log-dir",
        os.path.join(scratch, "logs"),
        "--epochs",
        "2",
        "--steps-per-epoch",
        str(sizes["END_TO_END_STEPS"]),
        "--batch-size",
        str(sizes["PIPELINE_BATCH"]),
        "--save-every",
        str(10**9),
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=child_env()).stdout
    return {
        "end_to_end_img_s": float(re.findall(r"images_per_second: ([\d.]+)", out)[-1]),
        "end_to_end_validation_seconds": float(re.findall(r"validation_seconds: ([\d.]+)", out)[-1]),
    }


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
    main(get_args_parser().parse_args())
