"""Reads a weight file that other people wrote as data only, never as code: the TensorFlow community's
`bvlc_alexnet.npy` (Caffe's BVLC AlexNet in TensorFlow's layout) and files of its format.

The format: a NumPy .npy file whose array is a 0-d object array, its item a dict from layer names (conv1 ... fc8) to
[weights, biases]; what `np.save(path, layers)` writes, and `np.load(path, allow_pickle=True,
encoding="latin1").item()` reads. That object is a pickle, and np.load unpickles it with Python's full pickle, which
calls whatever function a crafted file names (the hole that made PyTorch add `torch.load(weights_only=True)`). Here
the header is read with numpy.lib.format and the pickle with an Unpickler that admits only what such a file needs:
NumPy arrays, dtypes and scalars, and the bytes of Python 3 pickles; dicts, lists, strings and numbers need no
function. Anything else is refused before it runs.
"""

import pickle
import warnings

import numpy as np

from alexnet_tf.errors import DataError

ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),  # an ndarray, as NumPy 1 (and the Python 2 file) pickles it
    ("numpy._core.multiarray", "_reconstruct"),  # the same, NumPy 2
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),  # an ndarray in a protocol 5 pickle
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # bytes in a protocol 2 pickle written by Python 3
}


# What numpy.lib.format and the unpickler raise for a file that is not such an .npy (be specific: nothing else)
NOT_THIS_FORMAT = (
    pickle.UnpicklingError,
    ValueError,
    EOFError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    UnicodeDecodeError,
)


class RefusedName(pickle.UnpicklingError):
    """The pickle names a function that is not in ALLOWED_GLOBALS."""


class DataUnpickler(pickle.Unpickler):
    """An Unpickler that finds only ALLOWED_GLOBALS: a pickle naming any other function fails at that name, before
    anything is called."""

    def find_class(self, module, name):
        if (module, name) not in ALLOWED_GLOBALS:
            raise RefusedName(f"it names {module}.{name}, which a weight file has no use for")
        with warnings.catch_warnings():  # NumPy 2 warns that numpy.core is private: the name is the file's
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def load_pickled_dict(path):
    """The dict of a weight file of the format above; a DataError, naming the file and what is wrong, for anything
    else: not an .npy file, a plain array, a pickle that names a function other than NumPy's, a damaged file."""
    fix = "give the bvlc_alexnet.npy file, or one written by np.save(path, {layer: [weights, biases]})"
    try:
        with open(path, "rb") as f:
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            _, _, dtype = read_header[np.lib.format.read_magic(f)](f)
            if not dtype.hasobject:
                raise DataError(f"{path} holds a plain {dtype} array, not a dict of layers: {fix}")
            array = DataUnpickler(f, encoding="latin1").load()
    except OSError as error:  # be specific: a file that cannot be opened or read
        raise DataError(f"cannot read {path} ({error.strerror}): {fix}") from None
    except RefusedName as error:
        raise DataError(f"{path} refused, nothing of it was run: {error}; {fix}") from None
    except NOT_THIS_FORMAT as error:
        raise DataError(
            f"{path} is not a weight file of this format ({type(error).__name__}: {error}): {fix}"
        ) from None
    item = array.item() if isinstance(array, np.ndarray) and array.shape == () else array
    if not isinstance(item, dict):
        raise DataError(f"{path} holds a {type(item).__name__}, not a dict of layers: {fix}")
    return item
