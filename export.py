"""Exports a trained run as a SavedModel that classifies encoded images, its preprocessing and crop averaging inside,
for TF Serving or any TensorFlow program, without this project's code.

    python export.py --ckpt-dir ckpt-alexnet alexnet-export

The SavedModel's `serving_default` signature takes `images`, a batch of encoded images (JPEG, grayscale and CMYK
too, PNG, GIF, BMP bytes; tf.string, shape [N]), and returns, best first, `classes` (fc8 rows, int32 [N, k]),
`wnids` and `names` (tf.string [N, k]) and `scores` (the softmax averaged over the crops, float32 [N, k]). OUT_DIR
also holds the run's config.json. TF Serving wants it as a numbered version folder: models/alexnet/1.
"""

import alexnet_tf  # noqa: F401  (first: TensorFlow's quiet start-up)

import argparse
import os
import shutil

import tensorflow as tf

import alexnet
from alexnet_tf import errors, preprocessing, run_folder

CROPS = "center"  # the cheapest; "ten" is the paper's test
EXPORT_CROPS = ("center", "ten")  # the deterministic ones: a served answer does not change between calls
TOP_K = 5  # the paper's top-5
SIGNATURE = "serving_default"


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=errors.HelpFormatter)
    parser.add_argument(
        "out_dir", metavar="OUT_DIR", help="folder to write the SavedModel into (a new one, or an earlier export)"
    )
    parser.add_argument("--ckpt-dir", default=run_folder.CKPT_DIR, help="run folder to export")
    parser.add_argument(
        "--crops", choices=EXPORT_CROPS, default=CROPS, help="center: one centre crop; ten: corners, centre, mirrors"
    )
    parser.add_argument("--top-k", type=int, default=TOP_K, help="classes returned per image")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it holds an earlier export")
    return parser


class Classifier(tf.Module):
    """The served function: encoded images to the top-k classes of the crop-averaged softmax."""

    def __init__(self, model, config, crops, top_k):
        super().__init__()
        self.model = model
        self.spec = config.preprocessing
        self.crops, self.k_crops = crops, preprocessing.crops_per_image(crops, 1)
        self.top_k = min(top_k, len(config.classes))
        self.wnids = tf.constant([c.wnid for c in config.classes])
        self.names = tf.constant([c.words for c in config.classes])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def classify(self, images):
        size = self.spec.crop_size
        crops = tf.map_fn(
            lambda encoded: preprocessing.eval_crops(
                encoded, self.spec, self.crops, self.k_crops, tf.constant([0, 0], tf.int64), xla=False
            ),
            images,
            fn_output_signature=tf.TensorSpec([self.k_crops, size, size, 3], tf.float32),
        )
        logits = self.model(tf.reshape(crops, [-1, size, size, 3]), training=False)
        per_crop = tf.reshape(tf.nn.softmax(logits), [tf.shape(images)[0], self.k_crops, -1])
        scores, classes = tf.math.top_k(tf.reduce_mean(per_crop, axis=1), self.top_k)
        return {
            "classes": classes,
            "wnids": tf.gather(self.wnids, classes),
            "names": tf.gather(self.names, classes),
            "scores": scores,
        }


def main(args):
    errors.check_counts(args, "top_k")
    errors.check_writable(args.out_dir, "OUT_DIR")
    if os.path.exists(args.out_dir) and not args.overwrite:
        raise errors.UsageError(f"{args.out_dir} exists: pass --overwrite to replace it, or choose another OUT_DIR")
    check_replaceable(args.out_dir)
    with alexnet.precision("float32"):
        model, config = alexnet.load_trained(args.ckpt_dir)
    classifier = Classifier(model, config, args.crops, args.top_k)
    print(f"Exporting {args.ckpt_dir} ({args.crops} crops, top {classifier.top_k}) to {args.out_dir} ...")
    write_saved_model(args.out_dir, classifier, config)
    print(f"Wrote {args.out_dir}: signature {SIGNATURE}, images (encoded, [N]) -> classes, wnids, names, scores")


def check_replaceable(out_dir):
    """A UsageError unless `out_dir` is missing, empty or an earlier export: --overwrite removes the folder whole,
    and a run folder, the clone or a home folder given as OUT_DIR by mistake must not go with it. A symlink is
    refused: the export would replace the link, not write where it leads."""
    if os.path.islink(out_dir):
        raise errors.UsageError(
            f"{out_dir} is a symlink to {os.path.realpath(out_dir)}: give that folder itself as OUT_DIR"
        )
    names = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []
    if names and run_folder.SAVED_MODEL_FILE not in names:
        raise errors.UsageError(
            f"{out_dir} holds {', '.join(names[:3])}{', ...' if len(names) > 3 else ''} and no SavedModel: "
            "--overwrite replaces only an earlier export (or an empty folder); choose another OUT_DIR"
        )


def write_saved_model(out_dir, classifier, config):
    """The SavedModel and config.json, written into a temporary folder beside `out_dir` and renamed into place when
    complete; an existing `out_dir` is replaced only then."""
    with run_folder.staging_beside(out_dir, "the SavedModel") as staging:
        tf.saved_model.save(classifier, staging, signatures={SIGNATURE: classifier.classify})
        # the run's folders are paths of this machine: a model to share goes without them
        run_folder.save_config(staging, config.portable())
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)


if __name__ == "__main__":
    parser = get_args_parser()
    with errors.reported(parser):
        main(parser.parse_args())
