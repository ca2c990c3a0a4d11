"""`make rollback DATASET=... TO=<version> REASON="..."`: make an earlier champion the production model again.

A version is a commit, as `make history` lists them. The champion of that commit (`models/<dataset>/production/`)
comes back from DVC's cache (or the DVC remote), whole, in place of today's. Then:
- the champion rolled back from is listed in the new production folder's `rolled_back.json` with the reason, and
  promote refuses those bytes from then on (tasks/promote.py): the next run does not promote it again unless it
  is retrained on other data or params;
- `reports/<dataset>/promotion.json` says what happened, and the report page is redrawn from it;
- dvc.lock records the promote and report stages as they now are (`dvc commit`), so `dvc status` is clean;
- a commit records it, `<dataset>: make rollback by <user>: data <version>; rolled back to <commit>: <reason>`,
  which `make history` and the report page list as a decision.
The pipeline's lock is held throughout, so no run of the dataset interleaves. If any step fails, the production
folder, promotion.json, the report and dvc.lock are put back as they were.
"""

from __future__ import annotations

import argparse
import getpass
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from versioning.commits import commit_version, data_version
from versioning.dvc_state import record_outputs
from tasks.common.config import Params, load_params, write_overrides
from tasks.common.errors import PipelineError, VersionError
from tasks.common.fileio import atomic_directory, write_bytes_atomic
from tasks.common.lock import pipeline_lock
from tasks.common.paths import PARAMS_FILE, DatasetPaths
from tasks.lib.model_versions import fetch, file_md5, resolve_commit
from tasks.lib.outputs import (Metrics, PromotionDecision, RolledBackModel, RolledBackModels, read_record,
                               write_record)
from tasks.lib.run_history import ROLLBACK_DECISION


def rollback(paths: DatasetPaths, params: Params, version: str, reason: str, by: str | None = None) -> str:
    """Restore the champion of `version`; return the commit that records it. VersionError when `version` has no
    champion or it is today's."""
    if not reason.strip():
        raise VersionError("say why (REASON=...): the reason is kept in the history and in rolled_back.json")
    commit = resolve_commit(paths.root, version)
    root, production = paths.root, paths.production_dir.relative_to(paths.root)
    with pipeline_lock(paths.lock_file, f"make rollback of {paths.dataset}"), \
            tempfile.TemporaryDirectory(prefix=".rollback-", dir=paths.production_dir.parent) as scratch_name:
        scratch = Path(scratch_name)
        restored = fetch(root, commit, str(production), scratch / "restored")
        restored_model = restored / paths.production_model_file.name
        if not restored_model.is_file():
            raise VersionError(f"version {commit[:10]}: {paths.dataset} had no champion then (its production folder "
                               "holds no model)")
        if not paths.production_model_file.is_file():
            raise VersionError(f"{paths.production_model_file}: no champion today, so nothing to roll back from; "
                               "run the pipeline first")
        leaving_md5, restored_md5 = file_md5(paths.production_model_file), file_md5(restored_model)
        if leaving_md5 == restored_md5:
            raise VersionError(f"version {commit[:10]}: its champion (md5 {restored_md5[:8]}) is already the "
                               "production model; nothing to do")
        when = datetime.now(timezone.utc).isoformat(timespec="seconds")
        by = by or getpass.getuser()
        refused = RolledBackModels(_rolled_back(paths).models + [RolledBackModel(
            leaving_md5, when, by, commit[:10], reason.strip())])
        # the model rolled back to is wanted again: it leaves the list if it was on it
        refused = RolledBackModels([model for model in refused.models if model.model_md5 != restored_md5])
        write_record(restored / paths.production_rollbacks_file.name, refused)
        decision = _decision(paths, restored, commit, by, reason.strip())
        saved = _save(paths, scratch / "saved")
        try:
            with atomic_directory(paths.production_dir) as staging:
                shutil.copytree(restored, staging, dirs_exist_ok=True)
            write_record(paths.promotion_file, decision)
            from tasks.report import write_report

            write_report(paths, params.dataset(paths.dataset), params.evaluate)
            write_overrides(paths, None)  # no run holds the lock: a killed run's overrides are not this version's
            record_outputs(root, paths.dataset, ("promote", "report"))
            recorded = commit_version(paths, f"{paths.dataset}: make rollback by {by}: data {data_version(paths)}; "
                                             f"{ROLLBACK_DECISION}{commit[:10]}: {reason.strip()}", "restored")
        except BaseException:
            _restore(paths, saved)
            raise
    return recorded or "(nothing to commit)"


def _rolled_back(paths: DatasetPaths) -> RolledBackModels:
    if paths.production_rollbacks_file.is_file():
        return read_record(paths.production_rollbacks_file, RolledBackModels)
    return RolledBackModels([])


def _decision(paths: DatasetPaths, restored: Path, commit: str, by: str, reason: str) -> PromotionDecision:
    """promotion.json after a rollback: the restored champion (as the challenger that won) against the champion
    it replaces, both on the test set each was promoted on."""
    restored_accuracy = read_record(restored / paths.production_metrics_file.name, Metrics).test_accuracy
    leaving_accuracy = (read_record(paths.production_metrics_file, Metrics).test_accuracy
                        if paths.production_metrics_file.is_file() else None)
    delta = None if leaving_accuracy is None else restored_accuracy - leaving_accuracy
    detail = f"the champion of {commit[:10]} restored by {by}: {reason}"
    return PromotionDecision(paths.dataset, True, f"{ROLLBACK_DECISION}{commit[:10]} by {by}: {reason}",
                             restored_accuracy, leaving_accuracy, delta, {},
                             [{"gate": "rollback", "passed": True, "detail": detail,
                               "model_md5": file_md5(restored / paths.production_model_file.name)}], None)


def _save(paths: DatasetPaths, saved: Path) -> Path:
    """Copies of what a rollback changes, to put back if it fails."""
    saved.mkdir()
    shutil.copytree(paths.production_dir, saved / "production")
    for path in (paths.promotion_file, paths.report_file, paths.root / "dvc.lock"):  # three distinct names
        if path.is_file():
            shutil.copy2(path, saved / path.name)
    return saved


def _restore(paths: DatasetPaths, saved: Path) -> None:
    with atomic_directory(paths.production_dir) as staging:
        shutil.copytree(saved / "production", staging, dirs_exist_ok=True)
    for path in (paths.promotion_file, paths.report_file, paths.root / "dvc.lock"):
        if (saved / path.name).is_file():
            write_bytes_atomic(path, (saved / path.name).read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m versioning.rollback", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--to", required=True, help="the version (a commit `make history` lists) to restore")
    parser.add_argument("--reason", required=True, help="why (kept in the history and in rolled_back.json)")
    arguments = parser.parse_args(argv)
    root = Path.cwd()
    try:
        params = load_params(root / PARAMS_FILE)
        params.listed_dataset(arguments.dataset)
        paths = DatasetPaths(root, arguments.dataset)
        leaving = file_md5(paths.production_model_file) if paths.production_model_file.is_file() else None
        recorded = rollback(paths, params, arguments.to, arguments.reason)
    except PipelineError as error:
        print(f"rollback failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"{arguments.dataset}: production is the champion of {resolve_commit(root, arguments.to)[:10]} again "
          f"(model md5 {file_md5(paths.production_model_file)[:8]}); promote refuses the model rolled back from "
          f"(md5 {(leaving or '-')[:8]}) from now on; recorded in commit {recorded[:10]} (make history)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
