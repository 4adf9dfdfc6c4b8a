"""Imports the published BVLC AlexNet weights (`bvlc_alexnet.npy`) as a run folder that test.py and classify.py use.

    python import_weights.py bvlc_alexnet.npy --ckpt-dir ckpt-bvlc --data-dir ILSVRC2012

The file: Caffe's BVLC reference AlexNet converted to TensorFlow's layout, a pickled dict (what
`np.load(path, allow_pickle=True, encoding="latin1").item()` returns, read here by weights_file's restricted
unpickler) from `conv1 ... conv5, fc6, fc7, fc8` to `[weights, biases]`. Convolution weights are HWIO with the input
channels of one group (conv2 5x5x48x256, conv4 3x3x192x384, conv5 3x3x192x256: two groups, the first half of the
outputs from the first half of the inputs); fc6 is 9216x4096 for pool5 flattened in height, width, channel order; fc8
is 4096x1000, its classes in Caffe's order (sorted WNIDs). The network is Caffe's deploy definition
(alexnet.CAFFE_BVLC) and its input Caffe's (preprocessing.CAFFE: a 256x256 warp, 227 crops, BGR, minus Caffe's
mean); the run's config.json records both, so every script evaluates it the way Caffe did.

The classes come from the devkit's meta.mat (`--data-dir`) or Caffe's synset_words.txt (`--classes`); with both,
their WNIDs must agree. Nothing is written into --ckpt-dir unless the whole import succeeds.
"""

import alexnet_tf  # noqa: F401  (first: TensorFlow's quiet start-up)

import argparse
import hashlib
import os
import resource
import time

import numpy as np
import tensorflow as tf

import alexnet
import data_reader
from alexnet_tf import errors, preprocessing, run_config, run_folder, weights_file

FORMAT = "bvlc_alexnet.npy"  # the TensorFlow community's conversion of Caffe's bvlc_alexnet.caffemodel


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=errors.HelpFormatter)
    parser.add_argument("weights", help=f"the weight file ({FORMAT} or one of its format)")
    parser.add_argument("--ckpt-dir", default=run_folder.IMPORTED_CKPT_DIR, help="run folder to write")
    parser.add_argument("--data-dir", help="ILSVRC2012 folder whose data/meta.mat names the classes")
    parser.add_argument(
        "--classes", metavar="SYNSET_WORDS", help="Caffe's synset_words.txt, for users without the devkit"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a run already in --ckpt-dir")
    return parser


def main(args):
    started = time.perf_counter()
    errors.check_writable(args.ckpt_dir, "--ckpt-dir")
    classes = class_list(args)
    if run_folder.run_files(args.ckpt_dir) and not args.overwrite:
        raise errors.CheckpointError(
            f"{args.ckpt_dir} already holds a run: pass --overwrite to replace it, or choose another --ckpt-dir"
        )
    print(f"Reading {args.weights} ...")
    architecture = run_config.Architecture(num_classes=data_reader.NUM_CLASSES, **alexnet.CAFFE_BVLC)
    model = architecture.build()
    layers = checked_layers(weights_file.load_pickled_dict(args.weights), args.weights, model)
    for name in alexnet.LAYER_NAMES:
        model.get_layer(name).set_weights(layers[name])
    config = run_config.RunConfig(
        architecture=architecture,
        classes=tuple(run_config.ClassName(wnid=s.wnid, words=s.words) for s in classes),
        preprocessing=preprocessing.CAFFE,
        settings=None,
        source=run_config.WeightsSource(
            weights=os.path.abspath(args.weights), sha256=sha256(args.weights), format=FORMAT
        ),
    )
    write_run(args.ckpt_dir, model=model, config=config)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"Imported {model.count_params():,} parameters into {args.ckpt_dir} in {time.perf_counter() - started:.1f} s "
        f"(peak memory {peak_gb:.1f} GB). Try: python classify.py --ckpt-dir {args.ckpt_dir} lussari.jpg"
    )


def class_list(args):
    """The run's classes in fc8's order (sorted WNIDs), named by meta.mat or synset_words.txt."""
    if not (args.data_dir or args.classes):
        raise errors.UsageError(
            "name the classes: --data-dir ILSVRC2012 (the devkit's data/meta.mat) or --classes synset_words.txt"
        )
    if args.data_dir:
        meta_mat = os.path.join(data_reader.existing_data_dir(args.data_dir), data_reader.META_MAT)
        leaves = sorted(data_reader.load_synsets(meta_mat), key=lambda s: s.wnid)
        if len(leaves) != data_reader.NUM_CLASSES:
            raise errors.DataError(
                f"{meta_mat} has {len(leaves)} classes, not ILSVRC2012's {data_reader.NUM_CLASSES}: "
                "give the ILSVRC2012 devkit's meta.mat"
            )
    if not args.classes:
        return leaves
    classes = data_reader.read_synset_words(args.classes)
    if args.data_dir and [s.wnid for s in classes] != [s.wnid for s in leaves]:
        raise errors.DataError(
            f"{args.classes} names other classes than {meta_mat}: give Caffe's synset_words.txt, or only one of "
            "--classes and --data-dir"
        )
    return classes


def checked_layers(layers, path, model):
    """{layer: [weights, biases]} as float32 arrays, once every layer of `model` (Caffe's AlexNet) is there with its
    shapes; a DataError naming the first one, in the network's order, that is missing or does not fit."""
    fix = f"give {FORMAT} (Caffe's two-group AlexNet in TensorFlow's layout)"
    expected = {name: [tuple(weight.shape) for weight in model.get_layer(name).weights] for name in alexnet.LAYER_NAMES}
    checked = {}
    for name in alexnet.LAYER_NAMES:
        if name not in layers:
            found = ", ".join(sorted(map(str, layers))[:4]) or "nothing"
            raise errors.DataError(f"{path} has no layer {name} (it has {found} ...): {fix}")
        pair = layers[name]
        if not isinstance(pair, list | tuple) or len(pair) != 2 or not all(isinstance(a, np.ndarray) for a in pair):
            raise errors.DataError(f"{path}: {name} is not [weights, biases] as two arrays: {fix}")
        for part, array, shape in zip(("weights", "biases"), pair, expected[name]):
            if array.shape != shape:
                raise errors.DataError(f"{path}: {name} {part} have shape {array.shape}, not {shape}: {fix}")
            if array.dtype.kind != "f" or not np.isfinite(array).all():
                raise errors.DataError(f"{path}: {name} {part} are not finite floating-point numbers: {fix}")
        checked[name] = [array.astype(np.float32) for array in pair]
    return checked


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_run(ckpt_dir, *, model, config):
    """The checkpoint and config.json, written into a temporary folder beside `ckpt_dir` and moved in when
    complete (config.json last, so that a kill leaves no half run); a run already there is replaced."""
    with run_folder.staging_beside(ckpt_dir, "the run") as staging:
        run_folder.checkpoint_manager(tf.train.Checkpoint(model=model), staging).save(checkpoint_number=0)
        run_folder.save_config(staging, config)
        os.makedirs(ckpt_dir, exist_ok=True)
        run_folder.remove(run_folder.run_files(ckpt_dir))
        for name in sorted(os.listdir(staging), key=lambda name: name == run_folder.CONFIG_NAME):
            os.replace(os.path.join(staging, name), os.path.join(ckpt_dir, name))


if __name__ == "__main__":
    parser = get_args_parser()
    with errors.reported(parser):
        main(parser.parse_args())
