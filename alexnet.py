"""AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012) for your programs, in the convention of `keras.applications`
(VGG16, ResNet50): the builder, `preprocess_input` and `decode_predictions`, with a run folder (trained by
train.py, or imported by import_weights.py) in place of downloaded weights.

    model = alexnet.AlexNet(weights="ckpt-alexnet")
    probabilities = model(alexnet.preprocess_input(images, "ckpt-alexnet"))
    alexnet.decode_predictions(probabilities, "ckpt-alexnet")  # [[(wnid, words, score), ...], ...]

`feature_extractor(run, "fc7")` gives a layer's vectors for other programs (features.py on files). The network itself
(layers, variants, precision) lives in `alexnet_tf.network`; its builder and what scripts use with it are named here
too.
"""

import alexnet_tf  # noqa: F401  (first: TensorFlow's quiet start-up)

import itertools
import os

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from alexnet_tf import network, preprocessing, run_folder
from alexnet_tf.network import (  # noqa: F401  (the builder and what goes with it, for the scripts and users)
    CAFFE_BVLC,
    DROPOUT,
    GROUPS,
    IMAGE_SIZE,
    LAYER_NAMES,
    NUM_CLASSES,
    PRECISIONS,
    alexnet,
    crop_averaging,
    default_precision,
    precision,
)
from alexnet_tf.run_folder import load_trained  # noqa: F401  (a run folder's model, and its RunConfig)


def AlexNet(  # noqa: N802  (the Keras-applications name)
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=network.NUM_CLASSES,
    classifier_activation="softmax",
    name="alexnet",
):
    """AlexNet in the convention of `keras.applications` (VGG16, ResNet50, ...).

    Args:
        include_top: with fc6, fc7 and fc8; without them the model ends at pool5 (6x6x256 at the run's input size),
            the features one fine-tunes elsewhere.
        weights: None (random, the paper's initialisation) or a run folder (ours, or one of import_weights.py),
            whose architecture, classes and weights the model takes; its input is what `preprocess_input` makes.
            "imagenet" (nothing is downloaded) is refused with how to import the published weights.
        input_tensor: a Keras tensor (`keras.Input`) to use as the model's input, in place of `input_shape`.
        input_shape: (height, width, channels); only without the top may the sides differ from the run's input (at
            least 63 pixels for ours, 67 for Caffe's; a smaller one is refused naming the smallest), and only
            without `weights` may the channels differ from 3.
        pooling: without the top: None (pool5's maps), "avg" or "max" (a vector of 256 features); with the top it
            has no place, and is refused.
        classes: fc8's size without `weights`; with them the run's (any other value is refused).
        classifier_activation: applied to fc8's logits ("softmax"; None for the logits).
    """
    if pooling not in (None, "avg", "max"):
        raise ValueError(f'pooling must be None, "avg" or "max", not {pooling!r}')
    if pooling and include_top:
        raise ValueError(f"pooling={pooling!r} applies to pool5's maps: pass include_top=False with it")
    if weights == "imagenet" and not os.path.isdir(weights):
        raise ValueError(
            'weights="imagenet": nothing is downloaded here; import the published BVLC weights once with '
            f'`python import_weights.py bvlc_alexnet.npy` and pass weights="{run_folder.IMPORTED_CKPT_DIR}" (README, '
            "Pretrained weights)"
        )
    if input_tensor is not None and not keras.backend.is_keras_tensor(input_tensor):
        raise ValueError(f"input_tensor must be a Keras tensor (keras.Input), not {type(input_tensor).__name__}")
    wanted = tuple(input_tensor.shape[1:]) if input_tensor is not None else input_shape
    channels = wanted[-1] if wanted else 3
    if weights is None:
        full = network.alexnet(num_classes=classes, input_channels=channels)
    else:
        full, config = load_trained(weights)
        if include_top and classes not in (network.NUM_CLASSES, len(config.classes)):
            raise ValueError(f"the run in {weights} has {len(config.classes)} classes, not {classes}")
        if channels != 3:
            raise ValueError(f"the run in {weights} takes RGB images: input_shape {wanted} needs 3 channels")
    run_input = full.input_shape[1:]
    input_shape = tuple(wanted or run_input)
    if include_top and input_shape != run_input:
        raise ValueError(f"with include_top, the input must be the run's {run_input}, not {input_shape}")
    if not include_top:
        smallest = _smallest_side(full.layers[1 : [layer.name for layer in full.layers].index("pool5") + 1])
        if any(side is not None and side < smallest for side in input_shape[:2]):
            raise ValueError(
                f"input_shape {input_shape} leaves pool5 no maps: give at least {smallest}x{smallest} pixels"
            )
    inputs = input_tensor if input_tensor is not None else keras.Input(input_shape, name="image")
    x = inputs
    for layer in full.layers[1:]:  # the network is a chain: its layers, weights included, applied to `inputs`
        x = layer(x)
        if layer.name == "pool5" and not include_top:
            break
    if include_top and classifier_activation is not None:
        x = layers.Activation(classifier_activation, dtype="float32", name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(keras.utils.get_source_inputs(inputs), x, name=name)


FEATURE_LAYERS = ("pool5", "fc6", "fc7")  # the layers whose vectors serve other programs (fc6, fc7 after ReLU)


def feature_extractor(run, layer="fc7", pooling=None):
    """The run's model from preprocessed images (preprocess_input's) to `layer`'s vectors, float32: pool5 flattened
    (9216 at the run's input size; 256 with `pooling` "avg" or "max"), or fc6 or fc7 after their ReLU (4096, before
    dropout, which inference skips anyway). Returns the Keras model."""
    if layer not in FEATURE_LAYERS:
        raise ValueError(f"layer must be one of {', '.join(FEATURE_LAYERS)}, not {layer!r}")
    if pooling is not None and layer != "pool5":
        raise ValueError(f"pooling={pooling!r} applies to pool5's maps, not to {layer}")
    if layer == "pool5":
        features = AlexNet(weights=run, include_top=False, pooling=pooling)
        output = features.output if pooling else layers.Flatten(name="flatten")(features.output)
        return keras.Model(features.input, layers.Activation("linear", dtype="float32", name="features")(output))
    model, _ = load_trained(run)
    output = layers.Activation("linear", dtype="float32", name="features")(model.get_layer(layer).output)
    return keras.Model(model.input, output)


def _smallest_side(feature_layers):
    """The side of the smallest square input that `feature_layers` (pad1 to pool5) leave at least one map of, by
    their own shape arithmetic: Keras says only that some pooling's output would be empty."""
    for side in itertools.count(1):
        shape = (None, side, side, 3)
        try:
            for layer in feature_layers:
                shape = layer.compute_output_shape(shape)
        except ValueError:
            continue
        return side


def preprocess_input(images, config):
    """A batch of decoded RGB images (N, height, width, 3) on the 0..255 scale, as the run of `config` (its dict, or
    its run folder) evaluates them with centre crops (test.py --crops center): (N, crop, crop, 3), float32."""
    spec = _config_of(config).preprocessing
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"images of shape {tuple(images.shape)}: give a batch (N, height, width, 3) of RGB images; "
            'PIL\'s Image.convert("RGB") makes grayscale, RGBA and CMYK ones RGB'
        )
    return tf.map_fn(
        lambda image: preprocessing.image_crops(image, spec, "center", 1, None)[0],
        images,
        fn_output_signature=tf.TensorSpec([spec.crop_size, spec.crop_size, 3], tf.float32),
    )


def decode_predictions(predictions, config, top=5):
    """For each row of `predictions` (N, classes), its `top` classes as (wnid, words, score) tuples, best first;
    names from the run of `config` (its dict, or its run folder)."""
    classes = _config_of(config).classes
    predictions = np.asarray(predictions)
    if predictions.ndim != 2 or predictions.shape[1] != len(classes):
        raise ValueError(
            f"predictions of shape {predictions.shape}: give a batch (N, {len(classes)}), one score a class of the run"
        )
    return [
        [(classes[i].wnid, classes[i].words, float(row[i])) for i in np.argsort(row)[::-1][:top]] for row in predictions
    ]


def _config_of(config):
    return run_folder.load_config(config) if isinstance(config, str | bytes | os.PathLike) else config
