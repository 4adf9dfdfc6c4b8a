"""TensorFlow's start-up, quiet unless the user asks: every script imports this module first.

TensorFlow 2.21 prints a screen of C++ lines when it loads (oneDNN, "Could not find cuda drivers", and on a machine
without a GPU "E0000 … failed call to cuInit"), some of them before TF_CPP_MIN_LOG_LEVEL takes effect, so that a
user's first sight of a working script reads as a failure. Unless TF_CPP_MIN_LOG_LEVEL is set (then the user's level
rules and nothing is hidden), this sets it to 2 (errors only) and holds back what TensorFlow writes to the standard
error while it loads and looks for devices; if loading fails, what was held back is written out. The decoding passes
that expect broken files (the unreadable-image scan, classify.py's probe) hold back libjpeg's complaints the same way
(`decoder_noise_held_back`), and the EXIF turn holds back oneDNN's once-a-process complaint about uint8
(`onednn_uint8_notice_held_back`). And the tf.data passes read once to their end run without autotuning
(`read_once`).
"""

import contextlib
import functools
import os
import sys
import tempfile

QUIET_LOG_LEVEL = "2"  # TensorFlow's C++ logs: errors only


@contextlib.contextmanager
def stderr_held_back(shown_if_raising=True):
    """Sends file descriptor 2 (where C++ code writes) to a temporary file; writes it out if the block raises (but
    for Ctrl-C, which the user asked for) and `shown_if_raising`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except KeyboardInterrupt:
            raise
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            if shown_if_raising:
                os.write(2, held.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def decoder_noise_held_back():
    """stderr_held_back(), unless the user set TensorFlow's log level and so asked to see its messages; the
    decoding errors that follow are the caller's to report."""
    return stderr_held_back(shown_if_raising=False) if QUIET else contextlib.nullcontext()


def loaded_quietly():
    """TensorFlow, loaded with its start-up lines held back unless the user set its log level; Ctrl-C while it loads
    (seconds) ends the program in one line, exit code 130, as it does anywhere else in the scripts."""
    try:
        if not QUIET:
            import tensorflow as tf

            return tf
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_LOG_LEVEL
        with stderr_held_back():
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # CUDA's initialisation prints the cuInit error here
            return tf
    except KeyboardInterrupt:
        print(f"\n{os.path.basename(sys.argv[0] or 'python')}: interrupted (Ctrl-C)", file=sys.stderr)
        raise SystemExit(130) from None


QUIET = "TF_CPP_MIN_LOG_LEVEL" not in os.environ
tf = loaded_quietly()


@functools.cache
def onednn_uint8_notice_held_back():
    """oneDNN logs once a process, as an error, that it leaves uint8 to TensorFlow's own kernels (on any CPU: its
    words "only on platforms with AVX-512" are printed on AVX-512 CPUs too): provoked here, held back unless
    the user set TensorFlow's log level, before the EXIF turn's first uint8 transpose would print it mid-run. Called
    where the turn is built, not at import: running an op fixes the devices, which train.py's strategy may still
    split."""
    with tf.init_scope(), decoder_noise_held_back():
        tf.transpose(tf.zeros((1, 1, 1), tf.uint8))


def read_once(dataset):
    """`dataset` without tf.data's autotuning, for a pass read to its end and dropped: dropping an autotuned iterator
    whose input has ended waits for its tuning thread to wake, seconds with both cores idle (docs/performance.md);
    its AUTOTUNE maps keep tf.data's default parallelism, the core count."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)
