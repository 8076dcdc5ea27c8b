"""facelab: a research workbench for the faces in a photo library."""

__version__ = "0.1.0"

from .catalog import Catalog
from .errors import (
    CatalogBusy,
    DimensionMismatch,
    FacelabError,
    ImageError,
    ModelNotFound,
)
from .settings import Settings

__all__ = ["Catalog", "CatalogBusy", "DimensionMismatch", "FacelabError", "ImageError",
           "ModelNotFound", "Settings", "__version__"]
