"""Writes a trained AlexNet's vectors of a layer (pool5, fc6 or fc7) for image files, for other programs: an .npz of
`paths` and `features` (float32, one row an image), each image preprocessed as classify.py --crops center does.

    python features.py --ckpt-dir ckpt-alexnet --layer fc7 --out features.npz photos/
"""

import alexnet_tf  # noqa: F401  (first: TensorFlow's quiet start-up)

import argparse
import os
import sys

import numpy as np

import alexnet
from alexnet_tf import datasets, errors, preprocessing, progress, run_folder

LAYER = "fc7"  # the paper's Figure 4 compares images by fc7's 4096 numbers
BATCH_SIZE = 32  # images a call of the network


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=errors.HelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files, or folders searched for images in them")
    parser.add_argument("--ckpt-dir", default=run_folder.CKPT_DIR, help="run folder (trained, imported or fine-tuned)")
    parser.add_argument(
        "--layer", choices=alexnet.FEATURE_LAYERS, default=LAYER, help="the layer whose vectors to write"
    )
    parser.add_argument(
        "--pooling", choices=("avg", "max"), help="with --layer pool5: 256 numbers, pooled over its 6x6 maps"
    )
    parser.add_argument("--out", required=True, help="the .npz file to write (paths, features)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="images a call of the network")
    return parser


def main(args):
    check_args(args)
    paths = image_paths(args.paths)
    extractor = alexnet.feature_extractor(args.ckpt_dir, args.layer, pooling=args.pooling)
    spec = run_folder.load_config(args.ckpt_dir).preprocessing
    written, features, skipped = [], [], []
    bar = progress.bar(len(paths), "image")
    for start in range(0, len(paths), args.batch_size):
        batch, names = [], []
        for path in paths[start : start + args.batch_size]:
            try:
                batch.append(preprocessing.load_image_crops(path, spec, "center", 1)[0])
                names.append(path)
            except errors.DataError as error:
                print(f"\nfeatures.py: skipped: {error}", file=sys.stderr)
                skipped.append(path)
        if batch:
            features.append(np.asarray(extractor.predict_on_batch(np.stack(batch)), np.float32))
            written += names
        bar.add(len(paths[start : start + args.batch_size]))
    if not written:
        raise errors.DataError(f"none of the {len(paths)} images could be read (named above)")
    np.savez(args.out, paths=np.array(written), features=np.concatenate(features))
    print(
        f"Wrote {args.out}: {len(written)} images x {features[0].shape[1]} {args.layer} features"
        + (f"; {len(skipped)} unreadable, skipped (named above)" if skipped else "")
    )


def check_args(args):
    errors.check_counts(args, "batch_size")
    if args.pooling and args.layer != "pool5":
        raise errors.UsageError(f"--pooling {args.pooling} pools pool5's maps: give it with --layer pool5")
    if not args.out.endswith(".npz"):
        raise errors.UsageError(f"--out {args.out}: name an .npz file, such as features.npz")
    errors.check_writable(args.out, "--out", kind="file")


def image_paths(given):
    """The image files named, and those in the folders named (recursively, hidden ones left out), in order."""
    paths = []
    for path in given:
        if os.path.isdir(path):
            paths += datasets.nested_image_files(path)
        elif os.path.exists(path):
            paths.append(path)
        else:
            raise errors.DataError(f"{path} not found: give image files or folders of them")
    if not paths:
        raise errors.DataError(f"no image files ({', '.join(datasets.IMAGE_EXTENSIONS)}) in {', '.join(given)}")
    return paths


if __name__ == "__main__":
    parser = get_args_parser()
    with errors.reported(parser):
        main(parser.parse_args())
