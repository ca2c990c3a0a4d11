"""Editing params.yaml in place: dotted keys set the way `dvc exp run -S` sets them, comments kept.

A flow run given `overrides` writes them into params.yaml for its duration (so that DVC sees and records them) and
puts the file back when it ends, however it ends. Before writing, it keeps the original text and its own PID in
PARAMS_BEFORE_OVERRIDES_FILE; if the run is killed (`kill -9`, a machine that goes down), the next flow run and
`make serve` find that file, see that its process is gone, and put params.yaml back first. So overrides never
outlive their run.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from tasks.common.architectures import ARCHITECTURES
from tasks.common.config import Params, parse_params
from tasks.common.errors import ConfigError


logger = logging.getLogger(__name__)


def check_read_by_the_run(params: Params, dataset: str, dotted_keys, source: str) -> None:
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


def override_params(path: Path, overrides: dict[str, Any], keep: Path | None = None,
                    dataset: str | None = None) -> str:
    """Set dotted keys (`{"train.epochs": 3}`) in params.yaml, keeping its comments; return the previous text.

    The new document is validated before it is written (atomically), so a bad override changes nothing; with
    `dataset`, so is every key's effect on that dataset's run (`check_read_by_the_run`).
    Like `dvc exp run -S`, this keeps params.yaml and dvc.lock telling the same story. With `keep`, the previous
    text and this process's PID are written there first, for `put_back_params`.
    """
    from ruamel.yaml import YAML

    from tasks.common.fileio import write_text_atomic

    path = Path(path)
    original = path.read_text(encoding="utf-8")
    round_trip = YAML()
    document = round_trip.load(original)
    for dotted_key, value in overrides.items():
        set_dotted(document, dotted_key, value)
    source = f"{path} with overrides {overrides}"
    params = parse_params(yaml.safe_load(_dump(round_trip, document)), source)
    if dataset is not None:
        check_read_by_the_run(params, dataset, overrides, source)
    if keep is not None:
        _claim(Path(keep), {"pid": os.getpid(), "params_file": str(path.resolve()), "overrides": overrides,
                            "params": original})
    write_text_atomic(path, _dump(round_trip, document))
    return original


def _claim(keep: Path, record: dict) -> None:
    """Write `record` to `keep` only if no other run holds it: written whole under a temporary name, then linked
    into place, which fails if the file exists. A live run's overrides are never taken for the original text."""
    from tasks.common.fileio import write_json_atomic

    keep.parent.mkdir(parents=True, exist_ok=True)
    draft = keep.with_name(f"{keep.name}.{os.getpid()}.tmp")
    write_json_atomic(draft, record)
    try:
        os.link(draft, keep)
    except FileExistsError:
        try:
            holder = json.loads(keep.read_text(encoding="utf-8")).get("pid")
        except (OSError, ValueError):
            holder = "unknown"
        raise ConfigError(f"{keep}: another run (process {holder}) has its overrides in params.yaml until it ends; "
                          f"run with overrides after it") from None
    finally:
        draft.unlink(missing_ok=True)


def put_back_params(path: Path, keep: Path, only_if_dead: bool = True) -> bool:
    """Write the params file back as `keep` holds it (the file it was taken from, whatever `path` says) and remove
    `keep`. With `only_if_dead`, only when the run that wrote it is gone (a run in progress keeps its overrides);
    without, only when this process wrote it (a run puts back its own overrides, never another's). True when the
    file was put back."""
    from tasks.common.fileio import write_text_atomic

    try:
        kept = json.loads(Path(keep).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except ValueError:  # a torn write cannot happen (atomic), but a hand edit can: leave both as they are
        logger.warning("%s: not readable JSON; params.yaml left as it is", keep)
        return False
    mine = kept.get("pid") == os.getpid()
    if (only_if_dead and not mine and _alive(kept.get("pid"))) or (not only_if_dead and not mine):
        return False
    write_text_atomic(Path(kept.get("params_file") or path), kept["params"])
    Path(keep).unlink()
    if kept.get("pid") != os.getpid():
        logger.warning("params.yaml held the overrides %s of a run that did not end (process %s is gone); put back "
                       "as it was before that run", kept.get("overrides"), kept.get("pid"))
    return True


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
