"""The threshold callback from the lecture notes, made strict: a missing metric is an error, not a crash."""

from __future__ import annotations

import logging

import keras

from tasks.errors import TrainingError

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
