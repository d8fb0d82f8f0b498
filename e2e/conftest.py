"""Fixtures for tests against the real control plane, Git servers and tools.

Each area keeps its fixtures in e2e/fixtures/<area>.py; they are all loaded here.
"""

pytest_plugins = [
    "e2e.fixtures.leaks",  # first: the cluster and controller fixtures feed its scan
    "e2e.fixtures.cluster",
    "e2e.fixtures.controllers",
    "e2e.fixtures.git",
    "e2e.fixtures.source",
    "e2e.fixtures.cli",
    "e2e.fixtures.oci",
    "e2e.fixtures.helm_repo",
    "e2e.fixtures.notification",
    "e2e.fixtures.kustomize",
    "e2e.fixtures.runtime",
]


import pytest  # noqa: E402


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """Keeps each phase's report on the test item, so fixtures can print logs of failed tests."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
