"""Smoke tests of the local Docker engine (marker `docker`)."""
