"""TensorBoard's summaries as the tests read them back: every point written, and the points TensorBoard's page shows."""

import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def tensorboard_points(folder):
    """{tag: [(step, value), ...]} of the summaries in `folder`, read with TensorBoard's Python reader: every point
    written, in the order of the event files."""
    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return {
        tag: [(event.step, tf.make_ndarray(event.tensor_proto)) for event in events.Tensors(tag)]
        for tag in events.Tags()["tensors"]
    }


def as_tensorboard_shows(points):
    """`points` of one tag as TensorBoard's page shows them: a point written at a step again (by a run resumed after
    being killed) replaces the points from that step on, as its loader does."""
    shown = []
    for step, value in points:
        while shown and shown[-1][0] >= step:
            shown.pop()
        shown.append((step, value))
    return shown
