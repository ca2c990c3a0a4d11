"""tasks/lib/device.py. No GPU here: the choice is tested from GPU names, and this machine's own answer is CPU."""

from tasks.lib.device import describe_device, training_device


def test_without_a_gpu_the_cpu_trains():
    assert describe_device([]) == "CPU"


def test_the_first_gpu_trains_and_the_others_are_counted():
    assert describe_device(["NVIDIA H200"]) == "GPU NVIDIA H200"
    assert describe_device(["NVIDIA A100", "NVIDIA A100"]) == "GPU NVIDIA A100 (+1 more GPU)"
    assert describe_device(["A", "B", "C"]) == "GPU A (+2 more GPUs)"


def test_this_machine_trains_on_what_tensorflow_sees():
    import tensorflow as tf

    expected = "CPU" if not tf.config.list_physical_devices("GPU") else "GPU"
    assert training_device().startswith(expected)
