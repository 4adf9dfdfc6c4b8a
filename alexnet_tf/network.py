"""AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012) as a Keras 3 model: the builder, its layers (LRN, grouped and
strided convolutions), its variants as data, its precision.

The top-level `alexnet.py` puts the Keras-applications API (`AlexNet`, `preprocess_input`, `decode_predictions`)
over this module.
"""

import contextlib

import keras
import tensorflow as tf
from keras import layers


# Architecture, paper §3
IMAGE_SIZE = 224  # the seed's input; the paper's "224x224" with conv1 padding 2 gives 55x55 maps
CONV1_PADDING = 2  # so that pool5 yields 6x6x256 = 9216 features, as the paper's fc6 input
NUM_CLASSES = 1000  # ILSVRC2012 leaves
DROPOUT = 0.5  # paper §4.2, on fc6 and fc7 outputs
GROUPS = 1  # 1: the seed's single tower; 2: the paper's two columns in conv2, conv4, conv5

# Local response normalisation, paper §3.3: b = a / (k + alpha * sum(a^2 over n channels))^beta.
# The seed used Caffe's k=1, alpha=2e-5 (Caffe divides alpha by n); we follow the paper, whose numbers we cite.
LRN_DEPTH_RADIUS = 2  # n = 5 adjacent channels
LRN_BIAS = 2.0  # k
LRN_ALPHA = 1e-4  # alpha
LRN_BETA = 0.75  # beta
PAPER_LRN = {"depth_radius": LRN_DEPTH_RADIUS, "bias": LRN_BIAS, "alpha": LRN_ALPHA, "beta": LRN_BETA}

# Caffe's BVLC reference AlexNet (models/bvlc_alexnet/deploy.prototxt), the network of the published bvlc_alexnet
# weights: 227x227 input, conv1 without padding, two groups, LRN local_size 5, alpha 1e-4 (divided by 5), k 1
CAFFE_BVLC = {
    "image_size": 227,
    "conv1_padding": 0,
    "groups": 2,
    "lrn": {"depth_radius": 2, "bias": 1.0, "alpha": 1e-4 / 5, "beta": 0.75},
}

LAYER_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")  # the layers with weights

# Initialisation, paper §5
WEIGHT_STDDEV = 0.01  # weights ~ N(0, 0.01)
ONE_BIAS_LAYERS = ("conv2", "conv4", "conv5", "fc6", "fc7")  # biases 1, "accelerates the early stages"

# Precision: Keras mixed-precision policies; variables, logits and loss stay float32 under all of them
PRECISIONS = {"float32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}  # CPUs with native bfloat16 arithmetic
BF16_GPU_CAPABILITY = (8, 0)  # Ampere and newer compute bfloat16 at full tensor-core rate


@keras.saving.register_keras_serializable(package="alexnet")
class LocalResponseNormalization(layers.Layer):
    """Across-channel LRN of paper §3.3: b = a / (k + alpha * sum of a^2 over the 2r+1 nearest channels)^beta.

    Training runs it as fused_local_response_normalization; inference as TF's kernel, so that models exported for
    serving need no XLA. Both compute in float32: TF's kernel has no bfloat16 version on CPU."""

    def __init__(self, depth_radius=LRN_DEPTH_RADIUS, bias=LRN_BIAS, alpha=LRN_ALPHA, beta=LRN_BETA, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius, self.bias, self.alpha, self.beta = depth_radius, bias, alpha, beta

    @property
    def constants(self):
        return {"depth_radius": self.depth_radius, "bias": self.bias, "alpha": self.alpha, "beta": self.beta}

    def call(self, inputs, training=False):
        if training:
            return fused_local_response_normalization(inputs, **self.constants)
        normalized = tf.nn.local_response_normalization(tf.cast(inputs, tf.float32), **self.constants)
        return tf.cast(normalized, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **self.constants}


def fused_local_response_normalization(inputs, depth_radius, bias, alpha, beta):
    """LRN as XLA loops: the forward pass keeps d^(-1/4) of each denominator d (float32, the size of the input) for the
    backward, which then needs no window sums of a^2 again: faster training steps than TF's LRN kernel and its
    gradient (docs/performance.md). Same formula, same numbers to float32 rounding (tests)."""
    constants = {"depth_radius": depth_radius, "bias": bias, "alpha": alpha, "beta": beta}

    @tf.custom_gradient
    def normalize(inputs):
        outputs, quarter_roots = _lrn_forward(inputs, **constants)
        return outputs, lambda upstream: _lrn_backward(
            inputs, upstream, quarter_roots, depth_radius=depth_radius, alpha=alpha, beta=beta
        )

    return normalize(inputs)


def _window_sums(values, depth_radius):
    """Each channel's sum over the 2r+1 nearest (zeros beyond the edges), as shifted slices XLA fuses."""
    channels = values.shape[-1]
    padded = tf.pad(values, [[0, 0]] * (values.shape.rank - 1) + [[depth_radius, depth_radius]])
    return tf.add_n([padded[..., i : i + channels] for i in range(2 * depth_radius + 1)])


def _inverse_powers(quarter_roots, beta):
    """d ** -beta and d ** (-beta - 1) = d ** -beta * q^4 from q = d ** -0.25; d ** -beta for the 0.75 of the paper
    and Caffe as q^3, as XLA's CPU code computes pow and division several times slower than products."""
    if beta == 0.75:
        scale = quarter_roots * quarter_roots * quarter_roots
    else:
        scale = tf.pow(quarter_roots, 4 * beta)
    return scale, scale * tf.square(tf.square(quarter_roots))


@tf.function(jit_compile=True, autograph=False)
def _lrn_forward(inputs, depth_radius, bias, alpha, beta):
    """b = a d^-beta with d = k + alpha * (window sums of a^2), and q = d^-0.25 for the backward."""
    a = tf.cast(inputs, tf.float32)
    quarter_roots = tf.sqrt(tf.math.rsqrt(bias + alpha * _window_sums(a * a, depth_radius)))
    scale, _ = _inverse_powers(quarter_roots, beta)
    return tf.cast(a * scale, inputs.dtype), quarter_roots


@tf.function(jit_compile=True, autograph=False)
def _lrn_backward(inputs, upstream, quarter_roots, depth_radius, alpha, beta):
    # b_i = a_i d_i^-beta with d_i = k + alpha * sum of a_j^2 over i's window, so
    # dL/da_j = g_j d_j^-beta - 2 alpha beta a_j * sum over the windows holding j of g_i a_i d_i^(-beta-1)
    a, g = tf.cast(inputs, tf.float32), tf.cast(upstream, tf.float32)
    scale, scale_over_denominator = _inverse_powers(quarter_roots, beta)
    spread = _window_sums(g * a * scale_over_denominator, depth_radius)
    return tf.cast(g * scale - 2 * alpha * beta * a * spread, inputs.dtype)


@keras.saving.register_keras_serializable(package="alexnet")
class GroupedConv2D(layers.Conv2D):
    """Conv2D whose `groups` are computed as one convolution per group on channel slices, as the paper's two-GPU code
    did: with TF's own grouped convolution AlexNet trained several times slower than the single tower on CPU, this way
    faster than it (docs/performance.md). The kernel is Conv2D's (height, width, input channels of a group,
    filters; group g's filters the g-th slice), so checkpoints and imported weights are the same, and so are the
    numbers (tests)."""

    def convolution_op(self, inputs, kernel):
        if self.groups == 1:
            return super().convolution_op(inputs, kernel)
        pairs = zip(tf.split(inputs, self.groups, axis=-1), tf.split(kernel, self.groups, axis=-1))
        return tf.concat([super(GroupedConv2D, self).convolution_op(x, w) for x, w in pairs], axis=-1)


@keras.saving.register_keras_serializable(package="alexnet")
class StridedConv2D(layers.Conv2D):
    """Conv2D for conv1 (11x11, stride 4, 3 input channels, no padding of its own) whose kernel gradient in bf16 is
    computed as a stride-1 convolution of the images cut into stride x stride blocks stacked as channels
    (space-to-depth, the kernel zero-padded to whole blocks): for 3 input channels at stride 4 TensorFlow's own bf16
    kernel gradient is the slower on CPU, its float32 one the faster (docs/performance.md). The forward pass, the
    weights and the numbers are Conv2D's (tests)."""

    def convolution_op(self, inputs, kernel):
        if inputs.dtype != tf.bfloat16 or self.padding != "valid" or self.strides[0] != self.strides[1]:
            return super().convolution_op(inputs, kernel)
        stride = self.strides[0]

        @tf.custom_gradient
        def convolve(images, weights):
            def gradients(upstream):
                image_gradient = tf.nn.conv2d_transpose(upstream, weights, tf.shape(images), stride, "VALID")
                return image_gradient, kernel_gradient_by_blocks(images, upstream, weights.shape, stride)

            return layers.Conv2D.convolution_op(self, images, weights), gradients

        return convolve(inputs, tf.convert_to_tensor(kernel))  # a variable itself (bf16 policy) would be captured


def kernel_gradient_by_blocks(images, upstream, kernel_shape, stride):
    """The gradient of the kernel of a VALID `stride` convolution of square images, from its `images` and its
    output's gradient `upstream`, computed as a stride-1 convolution on space-to-depth blocks of the images."""
    height, width, channels, filters = kernel_shape
    blocks = -(-max(height, width) // stride)  # kernel side in blocks, rounded up
    side = (tf.shape(upstream)[1] - 1 + blocks) * stride  # image rows the blocks cover; the rest take no part
    images = images[:, :side, :side]
    missing = side - tf.shape(images)[1]  # rows short of whole blocks, which the zero-padded kernel never sees
    images = tf.pad(images, [[0, 0], [0, missing], [0, missing], [0, 0]])
    block_gradient = tf.compat.v1.nn.conv2d_backprop_filter(
        tf.nn.space_to_depth(images, stride),
        (blocks, blocks, stride * stride * channels, filters),
        upstream,
        strides=[1, 1, 1, 1],
        padding="VALID",
    )
    # block row, block column, row in block, column in block -> kernel row, kernel column
    gradient = tf.reshape(block_gradient, (blocks, blocks, stride, stride, channels, filters))
    gradient = tf.reshape(
        tf.transpose(gradient, (0, 2, 1, 3, 4, 5)), (blocks * stride, blocks * stride, channels, filters)
    )
    return gradient[:height, :width]


def alexnet(
    num_classes=NUM_CLASSES,
    groups=GROUPS,
    dropout=DROPOUT,
    image_size=IMAGE_SIZE,
    conv1_padding=CONV1_PADDING,
    lrn=None,
    name="alexnet",
    input_channels=3,
):
    """AlexNet of Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional Neural
    Networks", NIPS 2012.

    Five convolutional layers (conv1..conv5, ReLU; LRN after conv1 and conv2; overlapping 3x3/2 max-pooling after
    conv1, conv2, conv5) and three fully connected ones (fc6, fc7 with dropout on their outputs; fc8 logits).

    Args:
        num_classes: size of fc8.
        groups: 1 for the single tower (62,378,344 parameters at 1000 classes), 2 for the paper's two-GPU
            connectivity in conv2, conv4 and conv5 (60,965,224 parameters), computed a group at a time
            (GroupedConv2D): as fast to train on CPU as the single tower.
        dropout: rate of the two dropout layers.
        image_size, conv1_padding, lrn: the input's side, conv1's zero padding and the LRN constants
            (depth_radius, bias, alpha, beta as tf.nn.local_response_normalization takes them; default PAPER_LRN).
            The paper's are the defaults; `alexnet(num_classes, **CAFFE_BVLC)` is Caffe's BVLC reference net.
        input_channels: 3 (RGB) for every run; another count for a network trained elsewhere from scratch.

    Returns:
        A `keras.Model` from image_size x image_size x 3 mean-subtracted pixels (0..255 scale) to float32 logits,
        float32 even under a mixed-precision policy.
    """

    def conv(filters, size, layer_name, layer=GroupedConv2D, **kwargs):
        return layer(filters, size, activation="relu", name=layer_name, **_init(layer_name), **kwargs)

    lrn = lrn or PAPER_LRN
    inputs = keras.Input((image_size, image_size, input_channels), name="image")
    x = layers.ZeroPadding2D(conv1_padding, name="pad1")(inputs) if conv1_padding else inputs
    x = conv(96, 11, "conv1", layer=StridedConv2D, strides=4)(x)
    x = LocalResponseNormalization(**lrn, name="norm1")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = conv(256, 5, "conv2", padding="same", groups=groups)(x)
    x = LocalResponseNormalization(**lrn, name="norm2")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = conv(384, 3, "conv3", padding="same")(x)
    x = conv(384, 3, "conv4", padding="same", groups=groups)(x)
    x = conv(256, 3, "conv5", padding="same", groups=groups)(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(4096, activation="relu", name="fc6", **_init("fc6"))(x)
    x = layers.Dropout(dropout, name="drop6")(x)
    x = layers.Dense(4096, activation="relu", name="fc7", **_init("fc7"))(x)
    x = layers.Dropout(dropout, name="drop7")(x)
    logits = layers.Dense(num_classes, name="fc8", dtype="float32", **_init("fc8"))(x)
    return keras.Model(inputs, logits, name=name)


def _init(layer_name):
    return {
        "kernel_initializer": keras.initializers.RandomNormal(stddev=WEIGHT_STDDEV),
        "bias_initializer": "ones" if layer_name in ONE_BIAS_LAYERS else "zeros",
    }


def default_precision():
    """bf16 where the hardware computes it natively (a GPU of compute capability 8.0 or newer; a CPU with
    AVX512-BF16 or AMX), float32 elsewhere."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
        return "bf16" if capability >= BF16_GPU_CAPABILITY else "float32"
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:  # be specific: no /proc outside Linux, where we do not guess
        return "float32"
    return "bf16" if flags & BF16_CPU_FLAGS else "float32"


@contextlib.contextmanager
def precision(name):
    """Builds the models of the block in `name`'s Keras dtype policy (fp16 gets loss scaling from Model.compile),
    and restores the policy that was in force before: a model keeps the policy it was built with."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISIONS[name])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def crop_averaging(model, k_crops):
    """Wraps `model` to take (batch, k_crops, H, W, 3) and return the softmax averaged over the crops."""
    crops = keras.Input((k_crops, *model.input_shape[1:]), name="crops")
    logits = layers.TimeDistributed(model, name="per_crop")(crops)
    probabilities = keras.ops.mean(keras.ops.softmax(logits, axis=-1), axis=1)
    return keras.Model(crops, probabilities, name=f"{model.name}_{k_crops}_crops")
