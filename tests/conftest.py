"""Fixtures shared across layers: the test cloud's connections serve both the testcloud smoke
tests and the engine tests that deploy onto it."""

pytest_plugins = ["tests.testcloud.fixtures"]
