"""requirements-gpu.lock (`make setup-gpu`) is requirements.lock plus TensorFlow's CUDA wheels: a copy the GPU build
forces on us, so every package both builds share must keep the CPU pin. No GPU here: the GPU build is not installed."""

import re

from tests.conftest import PROJECT_ROOT

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", re.MULTILINE)


def pins(name: str) -> dict[str, str]:
    return {package.lower(): version for package, version in PIN.findall((PROJECT_ROOT / name).read_text())}


def test_the_gpu_lock_keeps_every_cpu_pin_and_adds_only_nvidias_wheels():
    cpu, gpu = pins("requirements.lock"), pins("requirements-gpu.lock")

    assert {package: gpu.get(package) for package in cpu} == cpu
    added = set(gpu) - set(cpu)
    assert added and all(package.startswith("nvidia-") for package in added), sorted(added)
    assert "nvidia-cudnn-cu12" in added


def test_pins_are_read_from_both_files():
    assert pins("requirements.lock")["tensorflow"] == pins("requirements-gpu.lock")["tensorflow"] == "2.21.0"
