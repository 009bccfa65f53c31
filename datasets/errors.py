"""The datasets package's own error: a data source, file or data option it cannot use.

Raised by the library; the entry points (run_benchmark.py, train.py, the datasets scripts) turn it into
their one-line ``error:`` and exit code 2 (utils/errors.py lists it among the usage errors)."""


class DataError(ValueError):
    """The message names the bad value or file and what is accepted."""
