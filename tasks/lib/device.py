"""Which device trains. TensorFlow places the model on the first GPU it sees and on the CPU otherwise, so a GPU
needs no change to params.yaml: only TensorFlow's CUDA build (`make setup-gpu`, requirements-gpu.lock). The train
stage records the device in training.json; the report's run card and `make bench` show it.

`python -m tasks.lib.device` prints what this machine would train on (`make setup-gpu` ends with it).
"""

from __future__ import annotations

from collections.abc import Sequence


def describe_device(gpu_names: Sequence[str]) -> str:
    """The device training runs on, given the GPUs TensorFlow sees (their names, in TensorFlow's order): the first
    GPU, or the CPU when there is none. `train.distribution: mirrored` spreads training over all of them."""
    if not gpu_names:
        return "CPU"
    others = f" (+{len(gpu_names) - 1} more GPU{'s' if len(gpu_names) > 2 else ''})" if len(gpu_names) > 1 else ""
    return f"GPU {gpu_names[0]}{others}"


def visible_gpu_names() -> list[str]:
    """The GPUs TensorFlow sees, by model name where the driver gives one (imports TensorFlow)."""
    import tensorflow as tf

    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name") or gpu.name)
    return names


def training_device() -> str:
    return describe_device(visible_gpu_names())


if __name__ == "__main__":
    print(f"training runs on: {training_device()}")
