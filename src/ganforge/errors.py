"""Errors a user can fix: the entry points print their message, without a traceback."""


class GanforgeError(Exception):
    """A problem with the user's input (config, data, checkpoint) whose message names the fix."""


class DatasetNotFoundError(GanforgeError):
    """No source (data_dir, system copy, download) could provide the dataset."""


class CheckpointError(GanforgeError):
    """A checkpoint file is missing, truncated or not written by ganforge."""


class TrainingDivergedError(GanforgeError):
    """A loss became NaN or infinite."""


class ClassifierError(GanforgeError):
    """A domain classifier (the FID/KID/IS feature extractor) is missing, unreadable, or cannot be trained."""


class ConfigError(GanforgeError):
    """Config options that cannot work together, such as a conditional model on data without classes."""


class Preempted(GanforgeError):
    """Training was stopped by a signal (SIGTERM, a requeue signal) after saving a checkpoint.

    The process exits with ``128 + signal number``, as if killed by it, so that a scheduler or a
    shell script does not mistake the stop for a finished run."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
