"""Where training runs: one device (`none`), all local GPUs (`mirrored`) or several machines (`multi_worker`).

`train.distribution` in params.yaml picks a `tf.distribute` strategy; the model is built under its scope and
Keras' `fit` then splits each global batch across the replicas and averages the gradients. `multi_worker` reads
the cluster from the `TF_CONFIG` environment variable, the way TensorFlow does:

    TF_CONFIG='{"cluster": {"worker": ["host-a:12345", "host-b:12345"]}, "task": {"type": "worker", "index": 0}}'

Every worker runs the same command (`python -m tasks.train <dataset>`) with its own `task.index`. Only the chief
(worker 0, or the `chief` task when the cluster names one) writes the model and reports; the others write theirs
to a temporary folder that is removed afterwards (the pattern of Keras' multi-worker tutorial).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks.common.errors import ConfigError
from tasks.common.paths import DatasetPaths

TF_CONFIG = "TF_CONFIG"
_EXAMPLE = ('{"cluster": {"worker": ["host-a:12345", "host-b:12345"]}, '
            '"task": {"type": "worker", "index": 0}}')


def read_tf_config(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The cluster description in TF_CONFIG, checked; a ConfigError says what is wrong and what was found."""
    raw = environ.get(TF_CONFIG, "")
    if not raw.strip():
        _refuse("is not set (or empty)", raw)
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as error:
        _refuse(f"is not valid JSON ({error.msg} at character {error.pos})", raw)
    if not isinstance(document, dict) or not isinstance(document.get("cluster"), dict):
        _refuse("has no `cluster` mapping", raw)
    cluster, task = document["cluster"], document.get("task")
    if not cluster.get("worker") and not cluster.get("chief"):
        _refuse("lists no `worker` (or `chief`) addresses under `cluster`", raw)
    for role, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(item, str) and ":" in item for item in addresses):
            _refuse(f"`cluster.{role}` must be a list of \"host:port\" strings", raw)
    if not isinstance(task, dict) or task.get("type") not in cluster:
        _refuse(f"`task.type` must be one of the cluster's roles {sorted(cluster)}", raw)
    index = task.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[task["type"]]):
        _refuse(f"`task.index` must be an integer in 0..{len(cluster[task['type']]) - 1}", raw)
    return document


def _refuse(problem: str, raw: str):
    raise ConfigError(f"train.distribution is 'multi_worker' but the {TF_CONFIG} environment variable {problem}; "
                      f"expected JSON like {_EXAMPLE} (found {raw!r})")


def is_chief(tf_config: Mapping[str, Any]) -> bool:
    """The worker that writes the outputs: the `chief` task if the cluster has one, else worker 0."""
    task_type, index = tf_config["task"]["type"], tf_config["task"]["index"]
    if "chief" in tf_config["cluster"]:
        return task_type == "chief"
    return task_type == "worker" and index == 0


def strategy_for(distribution: str, environ: Mapping[str, str] = os.environ):
    """The tf.distribute strategy for `train.distribution`. Call it before any other TensorFlow operation:
    a multi-worker strategy configures TensorFlow's collective operations at startup."""
    import tensorflow as tf

    if distribution == "none":
        return tf.distribute.get_strategy()
    if distribution == "mirrored":
        return tf.distribute.MirroredStrategy()
    if distribution == "multi_worker":
        read_tf_config(environ)
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"train.distribution: expected 'none', 'mirrored' or 'multi_worker', found {distribution!r}")


def build_under(strategy, build_model, params, decay_steps: int | None = None):
    """`build_model(params, decay_steps, steps_per_execution)` under the strategy's scope, ready for `fit`."""
    multi_worker = params.distribution == "multi_worker"
    # Keras' multi-step loop (steps_per_execution > 1) fails under collective ops ("You must feed a value for
    # placeholder tensor"), so each worker runs one step per call.
    with strategy.scope():
        model = build_model(params, decay_steps, 1 if multi_worker else params.steps_per_execution)
    if multi_worker:
        _work_around_keras_multi_worker(model)
    return model


def _work_around_keras_multi_worker(model) -> None:
    """Keras 3's `fit` breaks under MultiWorkerMirroredStrategy (keras-team/keras#20585, still open for 3.15):
    it averages a whole (images, labels) batch across workers to learn the input shapes, and averages each
    scalar step metric "along axis 0". These two overrides on this model instance fix both. Epoch metrics are
    unaffected: Keras reads them from the metric variables, which sum over all workers."""
    import types

    import keras
    import tensorflow as tf

    def first_local_replica(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return model.distribute_strategy.experimental_local_results(value)[0]
        return value

    def build_from_local_batch(self, iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = keras.tree.map_structure(first_local_replica, next(batches))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def as_vectors(step):
        return lambda data: {name: tf.reshape(value, [1]) for name, value in step(data).items()}

    model._maybe_symbolic_build = types.MethodType(build_from_local_batch, model)
    model.train_step, model.test_step = as_vectors(model.train_step), as_vectors(model.test_step)


def writer_paths(paths: DatasetPaths, distribution: str, environ: Mapping[str, str] = os.environ) -> DatasetPaths:
    """Where this process writes the training outputs: `paths` itself, or a temporary root on a non-chief worker.

    Every worker saves (saving may take part in collective operations), but only the chief's files are kept.
    """
    if distribution != "multi_worker" or is_chief(read_tf_config(environ)):
        return paths
    return DatasetPaths(Path(tempfile.mkdtemp(prefix=f"{paths.dataset}-worker-")), paths.dataset)


def discard_worker_outputs(written: DatasetPaths, paths: DatasetPaths) -> None:
    """Remove what a non-chief worker wrote to its temporary root (nothing to do for the chief)."""
    if written.root != paths.root:
        shutil.rmtree(written.root, ignore_errors=True)
