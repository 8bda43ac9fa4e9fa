"""Question answering over Chinese policy documents, with cited paragraphs."""
from .config import Config
from .engine import Engine

__all__ = ["Config", "Engine"]
__version__ = "0.1.0"
