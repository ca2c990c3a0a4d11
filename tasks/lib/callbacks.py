"""The threshold callback from the lecture notes, made strict (a missing metric is an error, not a crash), and
the per-epoch record that lets an interrupted training run resume with its whole history."""

from __future__ import annotations

import json
import logging

import keras

from tasks.common.errors import TrainingError

logger = logging.getLogger(__name__)


class ThresholdStop(keras.callbacks.Callback):
    """Stop training at the end of the first epoch whose `monitor` reaches `threshold`.

    For accuracies "reaches" means >= threshold; for losses (names ending in "loss") it means <= threshold.
    """

    def __init__(self, monitor: str, threshold: float) -> None:
        super().__init__()
        self.monitor = monitor
        self.threshold = threshold
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if self.monitor not in logs:
            raise TrainingError(f"threshold callback: metric {self.monitor!r} is not logged; found {sorted(logs)}")
        value = float(logs[self.monitor])
        lower_is_better = self.monitor.endswith("loss")
        if (value <= self.threshold) if lower_is_better else (value >= self.threshold):
            shown = f"{self.threshold:g}" if lower_is_better else f"{self.threshold * 100:.4g}%"
            message = f"Reached {shown} {self.monitor} so cancelling training!"
            print(f"\n{message}")
            logger.info("%s (epoch %d, %s = %.4f)", message, epoch + 1, self.monitor, value)
            self.model.stop_training = True
            self.stopped_epoch = epoch + 1


class EpochRecorder(keras.callbacks.Callback):
    """Append each epoch's logs as one JSON line to `path`, so a run resumed by BackupAndRestore can report
    every epoch, not only those it ran itself. Lines of epochs the resumed run repeats are dropped."""

    def __init__(self, path) -> None:
        super().__init__()
        self.path = path
        self.records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        self._first_epoch: int | None = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self._first_epoch is None:
            self._first_epoch = epoch  # BackupAndRestore has restored the epoch counter by now
            self.records = self.records[:epoch]
            self.path.write_text("".join(json.dumps(record) + "\n" for record in self.records))
            if epoch:
                logger.info("resuming an interrupted training run after epoch %d (backup %s)", epoch, self.path.parent)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        record = {"epoch": epoch + 1, **{name: float(value) for name, value in (logs or {}).items()}}
        self.records.append(record)
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")

    def history(self) -> dict[str, list[float]]:
        """Per-metric lists over every epoch, the resumed ones included (as keras' History gives)."""
        names = [name for name in self.records[0] if name != "epoch"] if self.records else []
        return {name: [record[name] for record in self.records] for name in names}
