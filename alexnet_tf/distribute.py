"""tf.distribute for train.py: which strategy, the two mends that Keras's `fit` needs under
MultiWorkerMirroredStrategy, and handing the chief's results to the other workers.

`auto` picks multi-worker when TF_CONFIG is set, mirrored with more than one GPU, one device otherwise; on a machine
without GPUs, mirrored splits the CPU into `--cpu-replicas` logical devices, so that the distributed path runs
anywhere. The strategy must be made before TensorFlow runs anything.
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf.errors import UsageError

STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
CPU_REPLICAS = 2  # logical devices --strategy mirrored splits a GPU-less machine into, to exercise the path
KERAS_MENDED = "3.15"  # the Keras minor version whose private trainer the mends were written and tested against


def make_strategy(name, cpu_replicas=CPU_REPLICAS):
    """The tf.distribute strategy named by --strategy."""
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        name = "multi-worker" if os.environ.get("TF_CONFIG") else "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi-worker":
        return multi_worker_strategy()
    if gpus:
        return tf.distribute.MirroredStrategy()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())


def is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def multi_worker_strategy():
    """MultiWorkerMirroredStrategy over the cluster of TF_CONFIG, or of the Slurm job train.py runs in."""
    if os.environ.get("TF_CONFIG"):
        try:
            described = json.loads(os.environ["TF_CONFIG"])
            cluster, task = described["cluster"], described.get("task", {"type": "worker", "index": 0})
            kind, index = task["type"], task["index"]
            members = cluster.get(kind) or []
        except (ValueError, KeyError, TypeError, AttributeError) as error:  # be specific: not JSON, or no cluster
            raise UsageError(
                f"TF_CONFIG is not a cluster description ({error}): see docs/training.md, Scaling out"
            ) from None
        if not isinstance(index, int) or not 0 <= index < len(members):
            raise UsageError(
                f"TF_CONFIG's task is {kind} {index}, but its cluster has {len(members)} {kind}(s): give each machine "
                "its own index from 0 (docs/training.md, Scaling out)"
            )
        resolver = None
    elif "SLURM_PROCID" in os.environ:
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
    else:
        raise UsageError(
            "--strategy multi-worker needs TF_CONFIG, or a Slurm job (srun): see docs/training.md, Scaling out"
        )
    keras_trainer = keras_trainer_to_mend()
    strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    mend_keras_log_reduction(keras_trainer)
    return strategy


def keras_trainer_to_mend():
    """Keras's private TensorFlow trainer module, checked to hold what the mends replace: a Keras whose internals
    moved fails here, at start-up, in one line, rather than training wrongly."""
    try:
        from keras.src.backend.tensorflow import trainer

        trainer.reduce_per_replica, keras.Model._maybe_symbolic_build, keras.Model._symbolic_build  # noqa: B018
    except (ImportError, AttributeError) as error:  # be specific: the module or a function moved
        raise UsageError(
            f"Keras {keras.__version__} no longer has what train.py mends for multi-worker training "
            f"({error}); it was written for Keras {KERAS_MENDED}: install the versions of "
            "requirements.txt"
        ) from None
    return trainer


def mend_keras_log_reduction(trainer):
    """Keras 3.15 averages the step's logs across workers with strategy.reduce(..., axis=0), which fails on
    scalars (keras-team/keras#20585); the logs are replica-synchronised metric results, so a plain mean is right."""
    keras_reduce = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean"):
            return tf.nest.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return keras_reduce(values, strategy, reduction)

    trainer.reduce_per_replica = reduce_per_replica


def mend_keras_build(model):
    """Keras 3.15 builds the model on a batch reduced across workers, which MultiWorkerMirroredStrategy refuses for
    (images, labels) pairs (keras-team/keras#20585); this builds it on this worker's first replica's batch."""

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda value: self.distribute_strategy.experimental_local_results(value)[0], next(batches)
                )
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build.__get__(model)


def from_chief(strategy, compute):
    """compute() on the chief alone, its JSON-able result on every worker, through the strategy's collectives (no
    file to wait for): the workers cannot disagree on what it found. A UsageError of the chief's is raised on every
    worker, so that none waits for the others forever."""
    if not is_multi_worker(strategy):
        return compute()
    payload = b""
    if strategy.extended.should_checkpoint:
        try:
            payload = json.dumps({"value": compute()}).encode()
        except UsageError as error:
            payload = json.dumps({"error": str(error)}).encode()
    length = int(_sum_over_workers(strategy, np.array([len(payload)], np.float32))[0])
    received = np.zeros(length, np.float32)  # bytes as float32: exact, and every collective implementation sums it
    received[: len(payload)] = np.frombuffer(payload, np.uint8)
    result = json.loads(_sum_over_workers(strategy, received).astype(np.uint8).tobytes())
    if "error" in result:
        raise UsageError(result["error"])
    return result["value"]


def _sum_over_workers(strategy, value):
    """The sum of `value` as given by replica 0 (on the chief) and zeros from all other replicas."""

    def contribution(context):
        return tf.constant(value if context.replica_id_in_sync_group == 0 else np.zeros_like(value))

    return strategy.reduce(
        tf.distribute.ReduceOp.SUM, strategy.experimental_distribute_values_from_function(contribution), axis=None
    ).numpy()
