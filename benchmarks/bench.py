"""Measures what bounds an AlexNet run, in one process tree and one run: training images per second per CPU core
through our input pipeline against decoding alone and a plain PIL+numpy loader on the same images, --prepare's
throughput, the training step in float32 and bf16 against dense matmuls measured alongside, and train.py end to end
against its bare step. The pipeline figures are on generated ImageNet-like JPEGs, or on a sample of yours:

    python -m benchmarks.bench --data-dir ILSVRC2012 --json bench.json

This module is the command line, the order of the measurements and the figures derived from their rates;
pipelines.py measures the input pipelines and --prepare, steps.py the training step and train.py end to end, and
measuring.py times them.
"""

import alexnet_tf  # noqa: F401  (first: TensorFlow's quiet start-up)

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

import data_reader
from alexnet_tf import errors, prepared_shards
from benchmarks import measuring, pipelines, steps

# The generated ImageNet-like JPEGs (pipelines.photo_like)
IMAGES = 320

# Shared cores swing in speed within a second (docs/performance.md). A rate is the best of its rounds; a ratio is the
# median of its two sides' ratio within each round, the sides timed moments apart: the ratio of two bests would
# compare each side's luckiest moment.
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
PREPARE_REPEATS = 2  # preparing is slower and steadier than reading

PIPELINE_RATIOS = {
    "pipeline_fraction_of_decode": ("pipeline_img_s_per_core", "decode_only_img_s_per_core"),
    "pipeline_speedup_vs_pil": ("pipeline_img_s_per_core", "pil_img_s_per_core"),
    "pipeline_prepared_fraction_of_decode": ("pipeline_prepared_img_s_per_core", "decode_only_prepared_img_s_per_core"),
    "pipeline_speedup_vs_pil_prepared": ("pipeline_prepared_img_s_per_core", "pil_img_s_per_core"),
}


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
            pipelines.make_photo_dataset(generated, sizes["IMAGES"])
            prepared_shards.prepare(
                generated, generated + "-prepared", train_shards=pipelines.PREPARED_TRAIN_SHARDS, val_shards=1
            )
            announce(1, "the input pipeline and --prepare, on one core")
            results = {
                "cpu": cpu_name(),
                "cores": os.cpu_count(),
                "pipeline_data": os.path.abspath(args.data_dir) if args.data_dir else "generated",
                **run_pinned_to_one_core(args, args.data_dir or generated),
            }
            if "prepare_img_s_per_core" in results:
                machine_rate = results["prepare_img_s_per_core"] * results["cores"]
                results["prepare_hours_imagenet_train"] = IMAGENET_TRAIN_IMAGES / machine_rate / 3600
            announce(2, "the training step in float32 and bf16, one and two towers, against matmuls")
            results.update(measure_training(sizes))
            announce(3, "train.py end to end, on image files and on prepared shards, against its bare step")
            results.update(measure_end_to_end(generated, scratch, sizes))
            print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def announce(part, what):
    """One line as each part begins: the parts take minutes each, and print nothing else until the table."""
    print(f"Measuring {what} (part {part} of 3) ...", file=sys.stderr, flush=True)


def run_pinned_to_one_core(args, data_dir):
    """The pipeline figures, measured in a child process that may use one core only, so that they are per core."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [
            sys.executable,
            "-m",
            "benchmarks.bench",
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
            env=measuring.child_env(),
            preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}),
        )
        return json.load(open(out.name))


def measure_pipelines(data_dir, scratch, sizes):
    """The input pipeline's figures on a sample of `data_dir`'s training images (pipelines.pipeline_rates): image
    files are also prepared (the sample, into shards in `scratch`, timed), and the pipelines on the files and on
    those shards timed in the same rounds."""
    rates, prepared = pipelines.pipeline_rates(data_dir, scratch, sizes)
    return {**prepared, **pipeline_figures(rates)}


def measure_training(sizes):
    """The figures of the training steps, convolutions and matmuls of both precisions (steps.training_rates), and
    what Model.fit adds to a step."""
    rates, flops_per_image = steps.training_rates(sizes)
    return {**training_figures(rates, flops_per_image), "step_overhead_ms": steps.step_overhead_ms(sizes)}


def measure_end_to_end(data_dir, scratch, sizes):
    """train.py's figures on the generated JPEG folder `data_dir` and on its prepared shards (steps.end_to_end)."""
    return end_to_end_figures(*steps.end_to_end(data_dir, scratch, sizes))


# ----------------------------------------------------------------------------------------- derived figures


def pipeline_figures(rates):
    """The pipeline figures from the rates of each round (measuring.timed_rounds): each rate's best, and each ratio
    of PIPELINE_RATIOS whose two sides were timed, paired round by round."""
    figures = measuring.best_of(rates)
    for name, (numerator, denominator) in PIPELINE_RATIOS.items():
        if numerator in rates and denominator in rates:
            figures[name] = measuring.paired_ratio(rates, numerator, denominator)
    return figures


def training_figures(rates, flops_per_image):
    """The training figures from the rates of each round (steps.training_rates) and the training FLOPs of an image:
    each rate's best, and the ratios, paired round by round, of the convolutions and of the step (in FLOPs) to the
    matmul of the same precision, of two towers to one, and of bf16 to float32."""
    figures = {"train_flops_per_image": flops_per_image, **measuring.best_of(rates)}
    for key in ("fp32", "bf16"):
        matmul_rate = f"matmul_{key}_gflop_s"
        figures[f"conv_{key}_fraction_of_matmul_peak"] = measuring.paired_ratio(
            rates, f"conv_{key}_gflop_s", matmul_rate
        )
        figures[f"train_{key}_fraction_of_matmul_peak"] = (
            measuring.paired_ratio(rates, f"train_{key}_img_s", matmul_rate) * flops_per_image / 1e9
        )
        figures[f"train_groups2_{key}_vs_single"] = measuring.paired_ratio(
            rates, f"train_groups2_{key}_img_s", f"train_{key}_img_s"
        )
    figures["bf16_speedup_over_fp32"] = measuring.paired_ratio(rates, "train_bf16_img_s", "train_fp32_img_s")
    return figures


def end_to_end_figures(precision, runs, bare_blocks):
    """train.py's figures from steps.end_to_end's measurements: for each run ({suffix: (images/s of each epoch,
    validation seconds)}, in the order they ran, bare_blocks[i] and bare_blocks[i + 1] the bare step's blocks just
    before and after run i), its best epoch after the first (which traces and compiles), its validation seconds,
    and its fraction of the step: the median of its epochs after the first over the median of those blocks."""
    figures = {"end_to_end_precision": precision}
    for index, (suffix, (epochs, validation_seconds)) in enumerate(runs.items()):
        figures[f"end_to_end{suffix}_img_s"] = max(epochs[1:])
        figures[f"end_to_end{suffix}_validation_seconds"] = validation_seconds
        figures[f"end_to_end{suffix}_fraction_of_step"] = float(
            np.median(epochs[1:]) / np.median(bare_blocks[index] + bare_blocks[index + 1])
        )
    figures["bare_step_img_s"] = max(max(rates) for rates in bare_blocks)
    return figures


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
