"""Error types a user can act on. Each message names the file or key, what was expected and what was found."""


class PipelineError(Exception):
    """Base class for every failure the pipeline reports on purpose (as opposed to a bug)."""


class ConfigError(PipelineError, ValueError):
    """A value in params.yaml (or a flow override) is missing, unknown or out of range."""


class IDXFormatError(PipelineError, ValueError):
    """An IDX file is malformed: wrong magic number, dimensions, type code or byte length."""


class DownloadError(PipelineError):
    """No source could provide a file that passes its checksum.

    `transient` is True when at least one source failed in a way that trying again may fix (a timeout,
    a 503, a truncated body); False when every source was refused for good (404, checksum, not IDX).
    """

    def __init__(self, message: str, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient

    def __reduce__(self):
        # Prefect pickles a failed task's exception and its retry condition reads it back: keep `transient`.
        return type(self), (str(self), self.transient)


class ChecksumError(DownloadError, ValueError):
    """A file's SHA-256 differs from the known value."""


class InsecureURLError(DownloadError, ValueError):
    """A mirror URL (or a redirect) is not HTTPS."""


class DataValidationError(PipelineError, ValueError):
    """The data broke one or more expectations; the message lists every failed one."""


class DriftBlockedError(DataValidationError):
    """The data drifted from what the champion learned from, beyond a threshold, under `drift.action: block`."""


class ArrayFileError(PipelineError, ValueError):
    """An .npz file is missing, damaged, or holds something other than plain arrays (pickles are refused)."""


class TrainingError(PipelineError):
    """Training could not start or did not produce a usable model."""


class StageInterrupted(PipelineError):
    """The user interrupted a stage (Ctrl-C); the message says what a rerun does. Exit code 130, as for SIGINT."""


class ModelFileError(PipelineError, ValueError):
    """A model file that Keras cannot load safely: not a `.keras` archive, truncated, or unsafe (a Lambda layer)."""


class StageFailedError(PipelineError):
    """A pipeline stage failed; the message names the stage, the error type and its message."""


class PipelineLockedError(PipelineError):
    """Another run of the same dataset's pipeline holds the lock."""


class OutputFileError(PipelineError, ValueError):
    """A stage's output file, as a later stage reads it, is missing, malformed or lacks a field."""


class ImageFileError(PipelineError, ValueError):
    """An image file is missing, empty, not an image, too large, or sits where the image-folder layout has no
    place for it."""


class VersionError(PipelineError, ValueError):
    """A version asked for (a commit `make history` lists) that is not recorded, or has no such file."""
