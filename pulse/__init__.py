from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("adoption-pulse")  # one source: the version in pyproject.toml
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
