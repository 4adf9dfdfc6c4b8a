import functools

import numpy as np
import keras
import pytest
import tensorflow as tf

import alexnet
from alexnet_tf import errors, network


def test_parameter_counts_of_both_variants():
    assert alexnet.alexnet().count_params() == 62_378_344
    assert alexnet.alexnet(groups=2).count_params() == 60_965_224


def test_shapes_and_layer_names():
    model = alexnet.alexnet(num_classes=7)
    assert [layer.name for layer in model.layers if layer.name.startswith(("conv", "fc"))] == [
        "conv1",
        "conv2",
        "conv3",
        "conv4",
        "conv5",
        "fc6",
        "fc7",
        "fc8",
    ]
    assert model.get_layer("conv1").output.shape[1:] == (55, 55, 96)
    assert model.get_layer("pool5").output.shape[1:] == (6, 6, 256)
    logits = model(np.zeros((2, 224, 224, 3), np.float32))
    assert logits.shape == (2, 7) and logits.dtype == tf.float32


def test_logits_stay_float32_under_mixed_precision():
    with alexnet.precision("bf16"):
        model = alexnet.alexnet(num_classes=5)
    assert model.get_layer("fc7").compute_dtype == "bfloat16"
    assert model(np.ones((1, 224, 224, 3), np.float32)).dtype == tf.float32


def test_precision_is_restored_after_its_block_even_when_it_raises():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        with pytest.raises(ZeroDivisionError), alexnet.precision("bf16"):
            assert keras.config.dtype_policy().name == "mixed_bfloat16"
            raise ZeroDivisionError
        assert keras.config.dtype_policy().name == "mixed_float16"
    finally:
        keras.config.set_dtype_policy("float32")


def test_initialisation_follows_the_paper():
    keras.utils.set_random_seed(1)
    model = alexnet.alexnet()
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        kernel, bias = model.get_layer(name).get_weights()
        assert abs(kernel.std() - 0.01) < 0.0005, name
        assert np.all(bias == (1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0)), name


def test_lrn_is_the_papers_formula():
    a = np.random.default_rng(0).normal(0, 30, (1, 3, 3, 8)).astype(np.float32)
    padded = np.pad(a**2, [(0, 0), (0, 0), (0, 0), (2, 2)])
    sums = sum(padded[..., i : i + 8] for i in range(5))
    expected = a / (2 + 1e-4 * sums) ** 0.75
    np.testing.assert_allclose(network.LocalResponseNormalization()(a), expected, rtol=1e-5)


def reference_lrn(a, depth_radius, bias, alpha, beta):
    """The paper's formula in float64, written out channel by channel (TF's LRN op has no float64 kernel)."""
    channels = a.shape[-1]
    sums = [
        tf.add_n([a[..., j] ** 2 for j in range(max(0, i - depth_radius), min(channels, i + depth_radius + 1))])
        for i in range(channels)
    ]
    return a / (bias + alpha * tf.stack(sums, axis=-1)) ** beta


def value_and_gradient(lrn, a, upstream):
    with tf.GradientTape() as tape:
        tape.watch(a)
        b = lrn(a)
    return b, tape.gradient(b, a, output_gradients=upstream)


OTHER_LRN = {"depth_radius": 3, "bias": 1.0, "alpha": 1e-4, "beta": 0.5}  # a beta other than 0.75 takes another path


@pytest.mark.parametrize(
    "constants", [network.PAPER_LRN, alexnet.CAFFE_BVLC["lrn"], OTHER_LRN], ids=["paper", "caffe", "other"]
)
def test_lrn_and_its_gradient_match_the_formula_in_float64(constants):
    """Training's fused LRN, inference's TF kernel and tf.nn.local_response_normalization against the formula
    differentiated in float64: float32 to 1e-5 relative, bfloat16 to its rounding. Post-ReLU activations large
    enough that the window sums change the result by tens of percent."""
    rng = np.random.default_rng(0)
    a = np.maximum(rng.normal(20, 60, (2, 5, 5, 96)), 0)
    upstream = rng.normal(0, 1, a.shape)
    expected, expected_gradient = value_and_gradient(
        lambda x: reference_lrn(x, **constants), tf.constant(a, tf.float64), tf.constant(upstream, tf.float64)
    )
    assert np.max(np.abs(expected - a)) > 0.3 * np.max(a)
    for dtype, rtol in ((tf.float32, 1e-5), (tf.bfloat16, 2**-7)):
        layer = network.LocalResponseNormalization(**constants, dtype=dtype.name)
        candidates = {
            "fused": functools.partial(layer, training=True),
            "tf kernel": functools.partial(layer, training=False),
        }
        if dtype == tf.float32:  # TF's op has no bfloat16 CPU kernel
            candidates["tf.nn"] = lambda x: tf.nn.local_response_normalization(x, **constants)
        for name, lrn in candidates.items():
            b, gradient = value_and_gradient(lrn, tf.constant(a, dtype), tf.constant(upstream, dtype))
            assert b.dtype == dtype and gradient.dtype == dtype, name
            scale = np.max(np.abs(expected_gradient))
            np.testing.assert_allclose(tf.cast(b, tf.float64), expected, rtol=rtol, atol=1e-6, err_msg=name)
            np.testing.assert_allclose(
                tf.cast(gradient, tf.float64), expected_gradient, rtol=rtol, atol=rtol * scale, err_msg=name
            )


def test_crop_averaging_averages_softmax_over_crops():
    model = alexnet.alexnet(num_classes=4)
    crops = np.random.default_rng(0).normal(0, 50, (2, 3, 224, 224, 3)).astype(np.float32)
    averaged = alexnet.crop_averaging(model, 3)(crops)
    per_crop = tf.nn.softmax(model(crops.reshape(6, 224, 224, 3))).numpy().reshape(2, 3, 4).mean(axis=1)
    np.testing.assert_allclose(averaged, per_crop, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.sum(averaged, axis=1), 1.0, rtol=1e-5)


def test_load_trained_without_a_run_names_the_folder(tmp_path):
    with pytest.raises(errors.CheckpointError, match=str(tmp_path)):
        alexnet.load_trained(str(tmp_path))


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-5), ("bfloat16", 2e-2)])
def test_grouped_convolution_on_channel_slices_equals_keras_groups(dtype, tolerance):
    """conv2's shape: 5x5, 96 -> 256 channels in two groups; the same kernel in both layers, forward and gradients."""
    rng = np.random.default_rng(0)
    inputs = tf.constant(rng.normal(0, 1, (2, 13, 13, 96)), tf.float32)
    ours = network.GroupedConv2D(256, 5, padding="same", groups=2, dtype=dtype)
    keras_groups = keras.layers.Conv2D(256, 5, padding="same", groups=2, dtype=dtype)
    weights = [rng.normal(0, 0.05, (5, 5, 48, 256)).astype(np.float32), rng.normal(0, 1, 256).astype(np.float32)]
    assert_same_layer(ours, keras_groups, inputs, weights, tolerance)
    assert ours.kernel.shape == keras_groups.kernel.shape == (5, 5, 48, 256)


def assert_same_layer(ours, reference, inputs, weights, tolerance):
    """Two convolution layers given the same weights: the same outputs and gradients of inputs, kernel and bias."""
    results = []
    for layer in (ours, reference):
        layer.build(inputs.shape)
        layer.set_weights(weights)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = tf.cast(layer(inputs), tf.float32)
            loss = tf.reduce_sum(outputs * tf.cos(outputs))
        results.append([outputs, *tape.gradient(loss, [inputs, layer.kernel, layer.bias])])
    for mine, theirs in zip(*results):
        mine, theirs = tf.cast(mine, tf.float32).numpy(), tf.cast(theirs, tf.float32).numpy()
        np.testing.assert_allclose(mine, theirs, rtol=tolerance, atol=tolerance * np.abs(theirs).max())


@pytest.mark.parametrize("side, kernel, stride", [(228, 11, 4), (227, 11, 4), (231, 11, 4), (20, 7, 2)])
def test_kernel_gradient_by_blocks_equals_the_convolutions(side, kernel, stride):
    """228: conv1 after the paper's padding; 227: Caffe's input, one row short of whole blocks; 231: rows that
    take no part; 7/2: another kernel and stride."""
    rng = np.random.default_rng(side)
    images = tf.constant(rng.normal(0, 50, (2, side, side, 3)), tf.float32)
    weights = tf.constant(rng.normal(0, 0.01, (kernel, kernel, 3, 8)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(weights)
        outputs = tf.nn.conv2d(images, weights, stride, "VALID")
    upstream = tf.constant(rng.normal(0, 1, outputs.shape), tf.float32)
    expected = tape.gradient(outputs, weights, output_gradients=upstream)
    unknown_sides = [tf.TensorSpec((None, None, None, channels)) for channels in (3, 8)]  # as in a training loop
    by_blocks = tf.function(
        lambda x, dy: network.kernel_gradient_by_blocks(x, dy, weights.shape, stride), input_signature=unknown_sides
    )
    for ours in (
        network.kernel_gradient_by_blocks(images, upstream, weights.shape, stride),
        by_blocks(images, upstream),
    ):
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-5), ("bfloat16", 2e-2)])
def test_conv1_equals_keras_conv2d_forward_and_gradients(dtype, tolerance):
    """conv1's shape after the paper's padding: in bf16 its kernel gradient (computed by blocks) is Conv2D's, computed
    the ordinary way, within bf16's rounding."""
    rng = np.random.default_rng(1)
    inputs = tf.constant(rng.normal(0, 50, (2, 228, 228, 3)), tf.float32)
    weights = [rng.normal(0, 0.01, (11, 11, 3, 96)).astype(np.float32), rng.normal(0, 1, 96).astype(np.float32)]
    assert_same_layer(
        network.StridedConv2D(96, 11, strides=4, dtype=dtype),
        keras.layers.Conv2D(96, 11, strides=4, dtype=dtype),
        inputs,
        weights,
        tolerance,
    )
