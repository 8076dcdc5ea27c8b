"""facelab: a research workbench for the faces in a photo library."""

__version__ = "0.1.0"

from facelab.errors import (
    CatalogBusy,
    DimensionMismatch,
    FacelabError,
    ImageError,
    ModelNotFound,
)
from facelab.settings import Settings
from facelab.store.catalog import Catalog

__all__ = ["Catalog", "CatalogBusy", "DimensionMismatch", "FacelabError", "ImageError",
           "ModelNotFound", "Settings", "__version__"]
