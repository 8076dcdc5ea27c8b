"""Shared fixtures: the lfw-dev photos from ../shared, workspaces in tmp folders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "data" / "lfw-dev"


def lfw_or_skip() -> Path:
    """The lfw-dev folder; skipped when absent locally, a failure when absent on CI."""
    if (LFW / "images").is_dir():
        return LFW
    if os.environ.get("CI"):
        pytest.fail(f"CI must have ../shared beside the checkout; {LFW} is missing")
    pytest.skip(f"{LFW} not present")


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    return lfw_or_skip()


def lfw_images(n: int, *, per_person: int = 2) -> list[Path]:
    """A deterministic sample of n lfw-dev photos, ``per_person`` from each person."""
    root = lfw_or_skip() / "images"
    out: list[Path] = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        out.extend(sorted(person.glob("*.jpg"))[:per_person])
        if len(out) >= n:
            break
    return out[:n]


@pytest.fixture
def photo_folder(tmp_path: Path):
    """Factory: copy n lfw-dev photos into a fresh folder (copies, so tests may alter them)."""
    def make(n: int, name: str = "photos", per_person: int = 2) -> Path:
        dest = tmp_path / name
        for src in lfw_images(n, per_person=per_person):
            target = dest / src.parent.name / src.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
        return dest
    return make


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "ws"
