"""One exception hierarchy for facelab; every message says what to do next."""

from __future__ import annotations


class FacelabError(Exception):
    """Base class of every error facelab raises on purpose."""


class ConfigError(FacelabError, ValueError):
    """A setting or argument is outside its allowed range."""


class ModelNotFound(FacelabError):
    """Model weights are missing and could not be fetched."""


class ModelError(FacelabError):
    """A model file exists but does not behave as the adapter expects."""


class ImageError(FacelabError):
    """An image could not be read; ``kind`` says why, in one stable word.

    Kinds: ``missing``, ``permission``, ``empty``, ``not_image``, ``truncated``,
    ``too_large``, ``unsupported``, ``decode``, ``loop``.
    """

    def __init__(self, kind: str, path: object, detail: str = "") -> None:
        self.kind = kind
        self.path = str(path)
        self.detail = detail
        msg = f"{kind}: {self.path}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class CatalogError(FacelabError):
    """The DuckDB catalog cannot be opened or is inconsistent."""


class CatalogBusy(CatalogError):
    """Another process held the catalog's write lock for longer than the retry budget."""


class DimensionMismatch(FacelabError, ValueError):
    """Embeddings do not have the dimension of the space they are written to."""


class DataError(FacelabError, ValueError):
    """Input data is unusable (a file that is not what it claims, a column of the wrong type,
    NaN / infinite / all-zero vectors, duplicate rows); the message names the problem and the
    rows or column. Raised before anything is written."""


class IndexStale(FacelabError):
    """The vector index does not match the catalog and could not be repaired in place."""


class CatalogConflict(CatalogError):
    """A write was based on a stale read: the face changed since it was read.

    ``face_ids`` lists the faces whose revision no longer matches; nothing was written.
    Re-read them and decide again.
    """

    def __init__(self, message: str, face_ids: list[int] | None = None) -> None:
        self.face_ids = list(face_ids or [])
        super().__init__(message)
