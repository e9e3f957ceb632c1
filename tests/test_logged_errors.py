"""The suite's own guard: a test fails when Confab logs an error it did not declare."""

from pathlib import Path

pytest_plugins = ["pytester"]

LOGGING_TESTS = """
import logging

import pytest


def test_an_undeclared_error():
    logging.getLogger("conversations.consumers").error("websocket event failed")


@pytest.mark.logs_errors("provider exploded")
def test_a_declared_error():
    logging.getLogger("conversations.runner").error("the provider exploded")


@pytest.mark.logs_errors("provider exploded")
def test_another_error_than_declared():
    logging.getLogger("chatsite").error("the reaper failed")


def test_a_warning():
    logging.getLogger("conversations").warning("slow")
"""


def test_a_test_that_logs_an_error_fails_unless_it_declares_it(pytester, monkeypatch):
    pytester.makeconftest("from tests.conftest import no_errors_logged  # noqa: F401")
    pytester.makepyfile(test_logging=LOGGING_TESTS)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))

    result = pytester.runpytest_subprocess("--ds=chatsite.settings", "-p", "no:cacheprovider")

    # A failure at teardown: the test's own outcome stands, and the run fails.
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(["*conversations.consumers: websocket event failed*"])
    result.stdout.fnmatch_lines(["*chatsite: the reaper failed*"])
    result.stdout.fnmatch_lines(
        [
            "ERROR test_logging.py::test_an_undeclared_error - *",
            "ERROR test_logging.py::test_another_error_than_declared - *",
        ]
    )
