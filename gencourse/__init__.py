"""gencourse: reference implementations, data and grading tools of an open course on deep generative models."""
__version__ = "0.1.0"
