"""runba.utils: helpers around training; ``runba.utils.data`` holds datasets and loaders."""

from runba.utils import data

__all__ = ["data"]
