"""TensorBoard backend for mlhooks: each run a directory of standard event files."""

from .backend import DEFAULT_DIR, TensorBoardBackend, default_dir

__all__ = ["DEFAULT_DIR", "TensorBoardBackend", "default_dir"]
