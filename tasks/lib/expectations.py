"""The Great Expectations suite for one split, run on a per-image summary table (one row per image)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.lib.geometry import IMAGE_SIDE
from tasks.lib.startup import import_large
from tasks.lib.offline_pages import make_offline

# Before the import: GX logs hundreds of INFO lines while importing and every context setup step after it;
# the stage logs what a user needs. Analytics are off before GX reads the setting.
logging.getLogger("great_expectations").setLevel(logging.WARNING)
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
import_large("great_expectations")  # see tasks/lib/startup.py
import great_expectations as gx  # noqa: E402
from great_expectations.core.run_identifier import RunIdentifier  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

PIXEL_MAX = 255
_DOCS_SITE = "pipeline_reports"
# The Data Docs are a DVC output, so the same data must give the same bytes (a fresh clone's `make run` then leaves
# dvc.lock as committed). GX stamps each page with the wall clock and random ids; instead, each validation run is
# named after the data it read and dated at a fixed instant, and `_make_reproducible` renames the rest. When a run
# happened is what `make history` and the report's run log answer.
_RUN_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
_RUN_TIME_SHOWN = ("1970-01-01T00:00:00Z", "1970-01-01 00:00:00 UTC")
_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_LOAD_TIME = re.compile(r"(ge_load_time</span>.*?>)\d{8}T\d{6}\.\d{6}Z(<)", re.DOTALL)
_RUN_TIME_SORT = re.compile(r"'_run_time_sort': -?[0-9.e+-]+")


def summarize_images(images: np.ndarray, labels: np.ndarray, base_shares: np.ndarray | None = None) -> pd.DataFrame:
    """One row per image: its index, shape, dtype, pixel range, inked pixel count, label and the label's share;
    with `base_shares` (each class's share in the dataset's base, for a dataset that drops have grown), also the
    label's share relative to its share in the base (`share_vs_base`)."""
    count = len(images)
    flat = images.reshape(count, int(np.prod(images.shape[1:])))  # -1 cannot be resolved for 0 images
    label_counts = np.bincount(labels.astype(np.int64))
    columns = {
        "row": np.arange(count),
        "height": np.full(count, images.shape[1]),
        "width": np.full(count, images.shape[2] if images.ndim == 3 else 1),
        "dtype": np.full(count, str(images.dtype)),
        "pixel_min": flat.min(axis=1),
        "pixel_max": flat.max(axis=1),
        "inked_pixels": np.count_nonzero(flat, axis=1),
        "label": labels.astype(np.int64),
        "label_share": label_counts[labels.astype(np.int64)] / max(count, 1),
    }
    if base_shares is not None:
        reference = np.append(base_shares, 0.0)[np.minimum(labels.astype(np.int64), len(base_shares))]
        columns["share_vs_base"] = np.divide(columns["label_share"], reference, out=np.full(count, np.inf),
                                             where=reference > 0)
    return pd.DataFrame(columns)


def build_expectations(num_classes: int, expected_rows: int | None, balance_tolerance: float,
                       grown: bool = False) -> list:
    """Every expectation a split of a `num_classes`-class dataset must meet. `description` is what a failure
    message shows. Once drops have `grown` the dataset, `expected_rows` (the downloaded base's count) is a
    minimum instead of exact, and class balance is judged against the base's own shares (column
    `share_vs_base`) instead of uniform: a dataset may grow unevenly, within the tolerance."""
    classes = list(range(num_classes))
    uniform_share = 1 / num_classes
    expectations = [
        gx.expectations.ExpectColumnValuesToBeBetween(
            column="height", min_value=IMAGE_SIDE, max_value=IMAGE_SIDE, description=f"image height is {IMAGE_SIDE}"),
        gx.expectations.ExpectColumnValuesToBeBetween(
            column="width", min_value=IMAGE_SIDE, max_value=IMAGE_SIDE, description=f"image width is {IMAGE_SIDE}"),
        gx.expectations.ExpectColumnValuesToBeInSet(
            column="dtype", value_set=["uint8"], description="pixels are uint8"),
        gx.expectations.ExpectColumnValuesToBeBetween(
            column="pixel_min", min_value=0, max_value=PIXEL_MAX, description="pixel min >= 0"),
        gx.expectations.ExpectColumnValuesToBeBetween(
            column="pixel_max", min_value=0, max_value=PIXEL_MAX, description="pixel max <= 255"),
        gx.expectations.ExpectColumnValuesToBeBetween(
            column="inked_pixels", min_value=1, description="no all-blank image"),
        gx.expectations.ExpectColumnValuesToBeInSet(
            column="label", value_set=classes, description=f"label is an integer in 0..{num_classes - 1}"),
        gx.expectations.ExpectColumnDistinctValuesToContainSet(
            column="label", value_set=classes, description=f"all {num_classes} classes present"),
    ]
    if grown:
        expectations.append(gx.expectations.ExpectColumnValuesToBeBetween(
            column="share_vs_base", min_value=1 - balance_tolerance, max_value=1 + balance_tolerance,
            description=f"class balance: each class's share within (1 +/- {balance_tolerance:g}) x its share in the "
                        "dataset's base"))
    else:
        expectations.append(gx.expectations.ExpectColumnValuesToBeBetween(
            column="label_share", min_value=uniform_share * (1 - balance_tolerance),
            max_value=uniform_share * (1 + balance_tolerance),
            description=f"class balance: each class's share within {100 / num_classes:.3g} % x (1 +/- "
                        f"{balance_tolerance:g})"))
    if expected_rows is not None and grown:
        expectations.append(gx.expectations.ExpectTableRowCountToBeBetween(
            min_value=expected_rows, description=f"at least {expected_rows} images (the base and ingested drops)"))
    elif expected_rows is not None:
        expectations.append(gx.expectations.ExpectTableRowCountToEqual(
            value=expected_rows, description=f"{expected_rows} images"))
    return expectations


def run_suite(summaries: dict[str, pd.DataFrame], expectations_by_split: dict[str, list], docs_dir: Path,
              rows_shown: int) -> dict[str, list[dict]]:
    """Validate each split's summary table; build Data Docs in `docs_dir`; return per-split expectation results."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.delete_data_docs_site("local_site")
    context.add_data_docs_site(site_name=_DOCS_SITE, site_config={
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })
    source = context.data_sources.add_pandas("images")
    results = {}
    for split, summary in summaries.items():
        batch = source.add_dataframe_asset(name=split).add_batch_definition_whole_dataframe(split)
        suite = context.suites.add(gx.ExpectationSuite(name=f"{split}-images",
                                                       expectations=expectations_by_split[split]))
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=split, data=batch, suite=suite))
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name=f"{split}-checkpoint", validation_definitions=[definition],
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["row"],
                           "partial_unexpected_count": rows_shown},
        ))
        run = checkpoint.run(batch_parameters={"dataframe": summary},
                             run_id=RunIdentifier(run_name=f"data-{_digest(summary)}", run_time=_RUN_TIME))
        results[split] = [_describe_result(result, rows_shown)
                          for validation in run.run_results.values() for result in validation.results]
    # Once for both splits: a checkpoint's UpdateDataDocsAction would render the whole site after each split.
    context.build_data_docs(site_names=[_DOCS_SITE])
    make_offline(docs_dir)  # scripts and styles from vendor/web/, not CDNs (tasks/lib/offline_pages.py)
    _make_reproducible(docs_dir)
    return results


def _digest(summary: pd.DataFrame) -> str:
    """12 hex digits that identify the table validated (the run's name in the Data Docs)."""
    return hashlib.sha256(pd.util.hash_pandas_object(summary, index=True).values.tobytes()).hexdigest()[:12]


def _numbered_in_order():
    """A replacement for re.sub: each distinct match becomes 1, 2, ... in order of first appearance."""
    numbers: dict[str, str] = {}

    def number(found: re.Match) -> str:
        return numbers.setdefault(found.group(0), str(len(numbers) + 1))

    return number


def _make_reproducible(docs_dir: Path) -> None:
    """Rewrite what GX draws from the clock or from uuid4 in each page: random ids become 1, 2, ... in order of
    first appearance (they only pair a collapse button with its panel), times become "not recorded"."""
    for page in Path(docs_dir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        text = _UUID4.sub(_numbered_in_order(), text)
        text = _LOAD_TIME.sub(r"\1not recorded\2", text)
        text = _RUN_TIME_SORT.sub("'_run_time_sort': 0", text)
        for shown in _RUN_TIME_SHOWN:
            text = text.replace(shown, "not recorded")
        page.write_text(text, encoding="utf-8")


def _describe_result(result, rows_shown: int) -> dict:
    config = result.expectation_config
    details = result.result or {}
    offending = details.get("unexpected_index_list") or []
    return {
        "expectation": config.type,
        "description": config.description,
        "column": config.kwargs.get("column"),
        "success": bool(result.success),
        "unexpected_count": int(details.get("unexpected_count") or 0),
        "element_count": int(details.get("element_count") or 0),
        "observed_value": _plain(details.get("observed_value")),
        "missing_values": _plain(details.get("partial_missing_list") or []),
        "example_rows": [int(entry["row"]) for entry in offending[:rows_shown]],
        "example_values": [_plain(value) for value in (details.get("partial_unexpected_list") or [])[:rows_shown]],
    }


def _plain(value):
    """JSON-friendly form of NumPy scalars and lists GX hands back."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
