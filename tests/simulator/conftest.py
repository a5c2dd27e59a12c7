"""The simulator's tests use the worker tests' pipeline: a real web tier and worker around it."""

from tests.workers.conftest import pipeline  # noqa: F401 - fixture
