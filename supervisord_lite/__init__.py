"""supervisord_lite: build, release, run on one host."""

__version__ = "0.1.0"
