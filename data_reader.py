"""The ImageNet reader: what scripts and your programs call to read a dataset folder (ILSVRC2012 as the devkit and
the archives lay it out, your own folders of classes, or prepared shards): its classes, and the images of a split.

    synsets = data_reader.load_classes("ILSVRC2012")
    train = data_reader.read_split("ILSVRC2012", synsets, "train")  # .paths, .labels

The layouts are described, and read, in `alexnet_tf.datasets`; `python prepare_data.py` writes prepared shards and
the sample dataset (`python data_reader.py --prepare` and `--make-sample` name it).
"""

import sys

from alexnet_tf.datasets import (  # noqa: F401  (the reader's public names, for the scripts and users)
    DATA_DIR,
    GROUND_TRUTH,
    META_MAT,
    NUM_CLASSES,
    PREPARED_MANIFEST,
    TRAIN_DIR,
    VAL_DIR,
    VAL_FRACTION,
    VAL_NAME,
    Split,
    existing_data_dir,
    is_class_folders,
    is_prepared,
    list_train,
    list_val,
    load_classes,
    load_synsets,
    read_ground_truth,
    read_split,
    read_synset_words,
)

if __name__ == "__main__":
    print(
        f"data_reader.py is a module now: run `python prepare_data.py {' '.join(sys.argv[1:]) or '--help'}`",
        file=sys.stderr,
    )
    sys.exit(2)
