"""One line, not a traceback, for a failure the pipeline reports on purpose.

Prefect logs a failed task run and its flow run with the exception's traceback (`logger.exception`, or
`exc_info=True`): for a PipelineError (bad data, a bad params.yaml, drift that blocks) that printed about 60 lines of
Prefect's engine before the one-line message that already names the file, field or row. This filter keeps Prefect's
own line ("Task run failed with exception: ValidationError('...')") and drops the traceback for those errors only;
a bug (any other exception) keeps its traceback, in the terminal and in the server's logs alike.
"""

from __future__ import annotations

import logging

from tasks.common.errors import PipelineError

# The loggers Prefect's task and flow engines log run failures to (prefect/logging/loggers.py).
PREFECT_RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs")


class DropPipelineErrorTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PipelineError):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_pipeline_errors() -> None:
    """Install the filter on Prefect's run loggers (once; calling again changes nothing)."""
    for name in PREFECT_RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(each, DropPipelineErrorTracebacks) for each in logger.filters):
            logger.addFilter(DropPipelineErrorTracebacks())
