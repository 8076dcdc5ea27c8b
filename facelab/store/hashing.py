"""Content identity of photos: the hash that makes identical files one asset.

An asset *is* its content hash (``assets.content_hash``): scans and imports must compute it
the same way or the same photo would become two assets, so it lives with the store.
"""

from __future__ import annotations

import hashlib
import os

#: Bytes read per step: large enough for throughput, small enough for bounded memory.
HASH_CHUNK = 1 << 20


def file_hash(path: str | os.PathLike[str]) -> str:
    """The BLAKE2b-160 hex digest of a file's bytes (its asset's ``content_hash``)."""
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()
