"""semscale-hf: semantic-scale-balanced learning for the Hugging Face ecosystem."""

from importlib.metadata import PackageNotFoundError, version


try:
    __version__ = version("semscale-hf")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
