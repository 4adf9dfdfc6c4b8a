"""What bench.py's measurements share: the rounds that time them on a machine whose speed swings, their best rates
and paired ratios, and the environment of the child processes they run (the clone's train.py, bench.py pinned to
one core)."""

import alexnet_tf  # noqa: F401  (first: TensorFlow's quiet start-up)

import os
import time

import numpy as np

from alexnet_tf import startup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the clone, whose train.py is measured


def timed_rounds(runs, rounds, warmup=0):
    """The items/s of each of `runs` (name: a call that returns how many items it did, or that and the seconds its
    work took, when it times itself) in each of `rounds` rounds, each round calling every run once, after `warmup`
    rounds left untimed (a tf.data pipeline's first pass traces and autotunes): {name: [rate of each round]}."""
    rates = {name: [] for name in runs}
    for round_number in range(warmup + rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            done = run()
            items, seconds = done if isinstance(done, tuple) else (done, time.perf_counter() - start)
            if round_number >= warmup:
                rates[name].append(items / seconds)
    return rates


def best_of(rates):
    return {name: max(values) for name, values in rates.items()}


def paired_ratio(rates, numerator, denominator):
    """The median over the rounds of `timed_rounds` of numerator / denominator within each round."""
    return float(np.median(np.divide(rates[numerator], rates[denominator])))


def child_env():
    """This process's environment for a child that runs the clone's code: less the TensorFlow log level that
    startup.py set here unless the user had (a child given it would take it for the user's and show TensorFlow's
    start-up lines), and with the clone on PYTHONPATH (`python -m benchmarks.bench` from any folder)."""
    env = {name: value for name, value in os.environ.items() if not (startup.QUIET and name == "TF_CPP_MIN_LOG_LEVEL")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (ROOT, env.get("PYTHONPATH"))))
    return env
