"""Shared fixtures: tiny generated IDX datasets, params built from the real params.yaml, quiet tool settings."""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path

# Keep Prefect, GX, DVC and TensorFlow from writing to the home folder or phoning home during tests.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="prefect-home-")
os.environ.pop("PREFECT_API_URL", None)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dvc  # noqa: E402,F401 (DVC binds its log handler to sys.stdout at its first import: here, before a test
#           swaps sys.stdout for capsys's stream and closes it, which failed every later in-process DVC log line)
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from tasks.lib import idx  # noqa: E402
from tasks.common.config import Params, parse_params  # noqa: E402
from tasks.common.paths import IDX_FILE_NAMES, DatasetPaths  # noqa: E402
from tasks.lib.geometry import IMAGE_SIDE  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def make_images(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` 28x28 uint8 images with some ink each, and balanced labels 0..9."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    images[:, :4, :] = 0  # a blank border, as in MNIST
    labels = (np.arange(count) % 10).astype(np.uint8)
    return images, labels


def write_idx_dataset(folder: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                      gzipped: bool = False) -> dict[str, Path]:
    """Write the four standard IDX files into `folder`; return them by standard name."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {("train", "images"): train[0], ("train", "labels"): train[1],
              ("test", "images"): test[0], ("test", "labels"): test[1]}
    written = {}
    for key, array in arrays.items():
        payload = idx.encode_idx(array)
        name = IDX_FILE_NAMES[key]
        path = folder / (f"{name}.gz" if gzipped else name)
        path.write_bytes(gzip.compress(payload) if gzipped else payload)
        written[name] = path
    return written


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> DatasetPaths:
    """A repository root whose `custom` raw folder holds 60 train and 20 test generated images."""
    paths = DatasetPaths(tmp_path, "custom")
    write_idx_dataset(paths.raw_dir, make_images(60, seed=1), make_images(20, seed=2))
    return paths


def project_params_document() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())


@pytest.fixture
def project_params() -> Params:
    """The project's real params.yaml, validated."""
    return parse_params(project_params_document())


@pytest.fixture
def custom_params(tmp_path: Path) -> Params:
    """params.yaml with `custom` as the only dataset, reading generated files from tmp_path/incoming."""
    document = project_params_document()
    document["datasets"] = ["custom"]
    document["data"]["custom"]["local_dir"] = str(tmp_path / "incoming")
    document["data"]["custom"]["expected_counts"] = {"train": 60, "test": 20}
    return parse_params(document)


@pytest.fixture(scope="session")
def real_digits_root(tmp_path_factory) -> Path:
    """A repository root with a small real subset of mnist-sample (600 train / 200 test digits), normalized, with its
    data profile (what promote stores with a champion)."""
    from tasks.common.config import DriftParams
    from tasks.drift import check_drift
    from tasks.lib.mnist_sample import build_mnist_sample
    from tasks.normalize import normalize_dataset

    root = tmp_path_factory.mktemp("real-digits")
    arrays = build_mnist_sample()
    paths = DatasetPaths(root, "mnist-sample")
    write_idx_dataset(paths.raw_dir,
                      (arrays[("train", "images")][:600], arrays[("train", "labels")][:600]),
                      (arrays[("test", "images")][:200], arrays[("test", "labels")][:200]))
    check_drift(paths, parse_params(project_params_document()).dataset("mnist-sample"), DriftParams())
    normalize_dataset(paths)
    return root


@pytest.fixture
def digits(real_digits_root, tmp_path) -> DatasetPaths:
    """A private copy of the prepared real-digits subset, so tests never share outputs."""
    import shutil

    for folder in ("data", "reports"):
        shutil.copytree(real_digits_root / folder, tmp_path / folder)
    return DatasetPaths(tmp_path, "mnist-sample")


@pytest.fixture(scope="session")
def trained_digits(real_digits_root, tmp_path_factory) -> DatasetPaths:
    """A model trained for 3 epochs on the real-digits subset (outputs in their own root, shared read-mostly)."""
    import shutil

    from tasks.common.config import TrainParams
    from tasks.train import train_model

    root = tmp_path_factory.mktemp("trained-digits")
    for folder in ("data", "reports"):
        shutil.copytree(real_digits_root / folder, root / folder)
    paths = DatasetPaths(root, "mnist-sample")
    train_model(paths, TrainParams(epochs=3, threshold=1.0))
    return paths


@pytest.fixture(autouse=True)
def _temporary_servers_are_checked():
    """Fail a test that leaves running a temporary Prefect server whose log nobody reads (see prefect_server.py)."""
    yield
    server_module = __import__("sys").modules.get("prefect.server.api.server")
    if server_module is None:
        return
    from tests.prefect_server import CHECKED_TEMPORARY_PORTS

    unchecked = sorted(server.port for server in set(server_module.SubprocessASGIServer._instances.values())
                       if server.running and server.port not in CHECKED_TEMPORARY_PORTS)
    assert not unchecked, (f"a temporary Prefect server on port(s) {unchecked} was started outside "
                           "tests.prefect_server.temporary_server, so its log is never checked")


@pytest.fixture(scope="session", autouse=True)
def _postgres_stops_with_the_session():
    """The session's PostgreSQL server (tests/postgres.py) is started by the first served test and stopped here."""
    yield
    from tests.postgres import stop_shared_postgres

    stop_shared_postgres()


FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def real_fashion_images(count: int, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """The first `count` images and labels of a real Fashion-MNIST split (Debian's dataset-fashion-mnist)."""
    images = idx.read_images(FASHION_MNIST_DIR / f"{IDX_FILE_NAMES[(split, 'images')]}.gz")
    labels = idx.read_labels(FASHION_MNIST_DIR / f"{IDX_FILE_NAMES[(split, 'labels')]}.gz")
    return images[:count].copy(), labels[:count].copy()


def near_copies(images: np.ndarray, seed: int = 0, moves: list | None = None) -> dict[str, np.ndarray]:
    """What a careless copy does to each image: `moved` by up to 2 px each way (one of the 24 moves, what leaves the
    frame lost; each (rows down, columns right) appended to `moves`), `brighter` (its pixels times 0.9-1.1), `jpeg`
    (re-encoded at quality 75)."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    steps = [(rows, columns) for rows in range(-2, 3) for columns in range(-2, 3) if rows or columns]
    moved, brighter, jpeg = [], [], []
    for image in images:
        rows, columns = steps[rng.integers(len(steps))]
        if moves is not None:
            moves.append((rows, columns))
        shifted = np.zeros_like(image)
        shifted[max(rows, 0):IMAGE_SIDE + min(rows, 0), max(columns, 0):IMAGE_SIDE + min(columns, 0)] = \
            image[max(-rows, 0):IMAGE_SIDE + min(-rows, 0), max(-columns, 0):IMAGE_SIDE + min(-columns, 0)]
        moved.append(shifted)
        brighter.append(np.clip(np.rint(image * rng.uniform(0.9, 1.1)), 0, 255).astype(np.uint8))
        encoded = io.BytesIO()
        Image.fromarray(image).save(encoded, "JPEG", quality=75)
        jpeg.append(np.asarray(Image.open(encoded).convert("L")))
    return {"moved": np.stack(moved), "brighter": np.stack(brighter), "jpeg": np.stack(jpeg)}


def write_image_folder(root: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], folders: list[str],
                       suffix: str = ".png", prefix: str = "") -> list[Path]:
    """Write each split's images as files in root/<split>/<folders[label]>/<prefix><row><suffix> (PNG or JPEG,
    as a user's image folder holds them); return the files written."""
    from PIL import Image

    written = []
    for split, (images, labels) in splits.items():
        for row, (image, label) in enumerate(zip(images, labels)):
            path = root / split / folders[int(label)] / f"{prefix}{row:05d}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path, **({"quality": 95} if suffix == ".jpg" else {}))
            written.append(path)
    return written


def run_log_html(paths: DatasetPaths) -> str:
    """The HTML run_log.js puts into the page."""
    statement = paths.run_log_file.read_text()
    prefix = 'document.getElementById("run-log").innerHTML = '
    assert statement.startswith(prefix) and statement.endswith(";\n")
    return json.loads(statement[len(prefix):-2])


# `make test` and `make test-slow` run the suite in parallel (pytest-xdist, `--dist loadscope`: a module's tests stay
# on one worker, so its module fixtures are built once). Most of the slow suite waits on servers, heartbeats and
# polls, not on the CPU. Two changes to xdist's grouping: a module whose fixture is parametrized by the server's
# database (`[postgresql]`, `[sqlite]`) is two units, one per database, since they share nothing; and the modules
# that take longest (measured with `--durations`) start first, so that none of them is the last one left.
DATABASE_PARAMETERS = ("postgresql", "sqlite")
LONGEST_FIRST = ("tests/reliability/test_crashed_runs.py", "tests/reliability/test_prefect_faults.py",
                 "tests/integration/test_remote_workers.py", "tests/integration/test_schedules.py",
                 "tests/integration/test_prefect_flow.py", "tests/integration/test_dvc_pipeline.py",
                 "tests/reliability/test_training_faults.py", "tests/reliability/test_dvc_faults.py")


def work_unit(nodeid: str) -> str:
    """The unit of work a test belongs to: its module, or its module and server database."""
    module, _, rest = nodeid.partition("::")
    parameters = rest.rpartition("[")[2].rstrip("]").split("-") if rest.endswith("]") else []
    database = next((name for name in parameters if name in DATABASE_PARAMETERS), None)
    return f"{module}::{database}" if database else module


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class LongestFirstScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

        def _assign_work_unit(self, node) -> None:
            if not getattr(self, "_ordered", False):  # once, after xdist built its queue, before the first unit
                rank = {module: place for place, module in enumerate(LONGEST_FIRST)}
                units = sorted(self.workqueue.items(),
                               key=lambda unit: rank.get(unit[0].partition("::")[0], len(rank)))
                self.workqueue.clear()
                self.workqueue.update(units)
                self._ordered = True
            super()._assign_work_unit(node)

    return LongestFirstScheduling(config, log)
