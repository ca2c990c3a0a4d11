"""Print where each dataset's outputs are and its headline metrics (the last step of `make run`)."""

from __future__ import annotations

from pathlib import Path

from tasks.common.config import load_params
from tasks.common.paths import PARAMS_FILE, DatasetPaths
from tasks.lib.outputs import Metrics, read_record


def describe_outputs(root: Path, dataset: str) -> str:
    paths = DatasetPaths(root, dataset)
    lines = [f"{dataset}:"]
    if paths.metrics_file.exists():
        metrics = read_record(paths.metrics_file, Metrics)
        lines.append(f"  test accuracy {metrics.test_accuracy:.4f}, test loss {metrics.test_loss:.4f}, "
                     f"stopped at epoch {metrics.stop_epoch}")
    for label, path in [("run report", paths.report_file),
                        ("metrics", paths.metrics_file), ("confusion matrix", paths.confusion_matrix_png),
                        ("misclassified", paths.misclassified_png), ("training curve", paths.training_history_file),
                        ("Data Docs", paths.data_docs_index), ("model", paths.model_file)]:
        state = "" if path.exists() else "  (missing)"
        lines.append(f"  {label + ':':18}{path.relative_to(root)}{state}")
    return "\n".join(lines)


def main() -> int:
    root = Path.cwd()
    for dataset in load_params(root / PARAMS_FILE).datasets:
        print(describe_outputs(root, dataset))
    print("Plots: dvc plots show (writes dvc_plots/index.html); metrics: dvc metrics show")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
