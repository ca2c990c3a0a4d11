"""A PipelineError in a Prefect run is logged as its line; a bug keeps its traceback."""

import io
import logging
import warnings

import pytest

from orchestration.log_filters import PREFECT_RUN_LOGGERS, quiet_pipeline_errors
from tasks.common.errors import PipelineError, DataValidationError


def logged(logger_name: str, error: Exception) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        try:
            raise error
        except Exception as raised:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Prefect's API handler: no flow run to send the record to here
                logger.error("Task run failed with exception: %r - Retries are exhausted", raised, exc_info=True)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


@pytest.mark.parametrize("logger_name", PREFECT_RUN_LOGGERS)
def test_a_pipeline_error_is_one_line_and_a_bug_keeps_its_traceback(logger_name):
    quiet_pipeline_errors()
    quiet_pipeline_errors()  # twice: one filter

    pipeline_error = logged(logger_name, DataValidationError("t10k-labels: label is an integer in 0..9; rows [3]"))
    bug = logged(logger_name, KeyError("x"))

    assert pipeline_error == ("Task run failed with exception: DataValidationError('t10k-labels: label is an integer "
                              "in 0..9; rows [3]') - Retries are exhausted\n")
    assert "Traceback (most recent call last)" in bug and "KeyError: 'x'" in bug
    assert sum(type(each).__name__ == "DropPipelineErrorTracebacks"
               for each in logging.getLogger(logger_name).filters) == 1
    assert issubclass(DataValidationError, PipelineError)
