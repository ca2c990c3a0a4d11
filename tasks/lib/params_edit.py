"""Editing params.yaml in place: dotted keys set the way `dvc exp run -S` sets them, comments kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tasks.common.config import parse_params
from tasks.common.errors import ConfigError


def override_params(path: Path, overrides: dict[str, Any]) -> str:
    """Set dotted keys (`{"train.epochs": 3}`) in params.yaml, keeping its comments; return the previous text.

    The new document is validated before it is written (atomically), so a bad override changes nothing.
    Like `dvc exp run -S`, this keeps params.yaml and dvc.lock telling the same story.
    """
    from ruamel.yaml import YAML

    from tasks.common.fileio import write_text_atomic

    path = Path(path)
    original = path.read_text(encoding="utf-8")
    round_trip = YAML()
    document = round_trip.load(original)
    for dotted_key, value in overrides.items():
        set_dotted(document, dotted_key, value)
    parse_params(yaml.safe_load(_dump(round_trip, document)), f"{path} with overrides {overrides}")
    write_text_atomic(path, _dump(round_trip, document))
    return original


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


def _dump(round_trip: Any, document: Any) -> str:
    import io

    buffer = io.StringIO()
    round_trip.dump(document, buffer)
    return buffer.getvalue()
