"""facelab: a research workbench for the faces in a photo library."""

__version__ = "0.1.0"

from .catalog import Catalog  # noqa: E402
from .errors import (  # noqa: E402
    CatalogBusy,
    DimensionMismatch,
    FacelabError,
    ImageError,
    ModelNotFound,
)
from .settings import Settings  # noqa: E402

__all__ = ["Catalog", "CatalogBusy", "DimensionMismatch", "FacelabError", "ImageError",
           "ModelNotFound", "Settings", "__version__"]
