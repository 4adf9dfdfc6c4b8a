"""bench.py's training measurements: train.py's compiled step in float32 and bf16 (one tower and two), AlexNet's
convolutions alone and dense matmuls timed alongside, the FLOPs a training image costs, what Model.fit adds to a
step, and train.py end to end against its bare step."""

import alexnet_tf  # noqa: F401  (first: TensorFlow's quiet start-up)

import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

import alexnet
from alexnet_tf import preprocessing, run_config, run_folder, train_options, training
from benchmarks import measuring


def training_rates(sizes):
    """The training steps, convolutions and matmuls of both precisions, all timed in the same rounds (each model keeps
    the precision it was built with), each ratio's two sides next to each other: ({name: [rate of each round]},
    the training FLOPs of an image)."""
    flops_per_image = training_flops(alexnet.alexnet())
    runs = {}
    for precision, key, dtype in (("float32", "fp32", tf.float32), ("bf16", "bf16", tf.bfloat16)):
        runs[f"train_{key}_img_s"] = training_step(precision, sizes)
        runs[f"matmul_{key}_gflop_s"] = matmul(dtype, sizes)
        runs[f"conv_{key}_gflop_s"] = convolutions(precision, sizes)
        runs[f"train_groups2_{key}_img_s"] = training_step(precision, sizes, groups=2)
    return measuring.timed_rounds(runs, sizes["TRAIN_STEPS"]), flops_per_image


def imagenet_config(groups=1, **settings):
    """A RunConfig of train.py's defaults on ILSVRC2012's 1000 classes, with these `settings`."""
    return run_config.RunConfig(
        architecture=run_config.Architecture(groups=groups),
        classes=tuple(run_config.ClassName(wnid=f"class{i}", words=f"class {i}") for i in range(1000)),
        preprocessing=preprocessing.Preprocessing(),
        settings=train_options.paper_settings(groups=groups, **settings),
    )


def training_step(precision, sizes, groups=1, batch=None):
    """One step of train.py's compiled training at `batch` (default TRAIN_BATCH) on synthetic tensors, as a call
    for timed_rounds; built and run once here."""
    batch = batch or sizes["TRAIN_BATCH"]
    config = imagenet_config(groups=groups, precision=precision, batch_size=batch)
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
    config = imagenet_config(batch_size=2, save_every=10**9 * training.STEPS_PER_EXECUTION)
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
            callbacks = training.run_callbacks(
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
    with alexnet.precision(precision):
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


def end_to_end(data_dir, scratch, sizes):
    """train.py's runs fed from the generated JPEG folder `data_dir` and from its prepared shards (data_dir +
    "-prepared"), and the bare compiled step (synthetic tensors, no input pipeline) at the same batch and precision,
    timed as train.py's epochs are, in blocks of as many steps, before, between and after the two runs: (the
    precision, {"": run, "_prepared": run}, [the bare blocks' rates before, between, after]), a run being (the
    training images/s of each of its epochs, the validation pass excluded; the seconds of its last validation)."""
    precision = alexnet.default_precision()
    bare_step = training_step(precision, sizes, batch=sizes["PIPELINE_BATCH"])

    def bare_epoch():
        return sum(bare_step() for _ in range(sizes["END_TO_END_STEPS"]))

    bare_blocks = [measuring.timed_rounds({"bare": bare_epoch}, sizes["BARE_BLOCKS"])["bare"]]
    runs = {}
    for suffix, data in (("", data_dir), ("_prepared", data_dir + "-prepared")):
        command = [
            sys.executable,
            os.path.join(measuring.ROOT, "train.py"),
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
        out = subprocess.run(command, capture_output=True, text=True, check=True, env=measuring.child_env()).stdout
        runs[suffix] = (
            [float(rate) for rate in re.findall(r"images_per_second: ([\d.]+)", out)],
            float(re.findall(r"validation_seconds: ([\d.]+)", out)[-1]),
        )
        bare_blocks.append(measuring.timed_rounds({"bare": bare_epoch}, sizes["BARE_BLOCKS"])["bare"])
    return precision, runs, bare_blocks
