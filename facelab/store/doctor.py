"""Check a workspace for drift between the catalog and its derived data, and repair it.

The catalog is the truth; indexes and derived embeddings are caches. The doctor proves the
invariants that matter on a real workspace (every face has a vector of the right
dimension, on an asset that exists; derived vectors belong to live faces) and brings every
vector index back in step: rebuilt when deleted, unreadable or of the wrong dimension,
caught up when stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from facelab.store.catalog import Catalog
from facelab.store.runs import mark_interrupted
from facelab.store.vectors import Drift, VectorIndex, verify


@dataclass
class Finding:
    check: str
    count: int
    detail: str
    repaired: bool = False


@dataclass
class DoctorReport:
    findings: list[Finding] = field(default_factory=list)
    indexes: list[Drift] = field(default_factory=list)
    repaired_indexes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.count for f in self.findings) and all(d.ok for d in self.indexes)

    def __str__(self) -> str:
        lines = []
        for f in self.findings:
            mark = "ok " if not f.count else ("fixed" if f.repaired else "BAD")
            lines.append(f"[{mark:>5}] {f.check}: {f.count} {f.detail}")
        for d in self.indexes:
            if d.ok:
                lines.append(f"[  ok ] index {d.space}: {d.index_count} vectors match the catalog")
                continue
            what = ("file missing" if d.file_missing else f"unreadable ({d.unreadable})"
                    if d.unreadable else "wrong dimension" if d.wrong_dim else
                    f"stale: {d.missing} missing, {d.extra} extra, {d.mismatched} changed")
            fixed = "fixed" if d.space in self.repaired_indexes else "BAD"
            lines.append(f"[{fixed:>5}] index {d.space}: {what} "
                         f"(catalog {d.catalog_count}, index {d.index_count})")
        return "\n".join(lines) or "empty workspace"


# (name, SQL counting violations, what a violation means, SQL repairing it or None)
CHECKS: list[tuple[str, str, str, str | None]] = [
    ("faces without vector",
     "SELECT count(*) FROM faces WHERE embedding IS NULL",
     "faces stored without their embedding (impossible by schema: NOT NULL)", None),
    ("vectors of wrong dimension",
     "SELECT count(*) FROM face_vectors v JOIN spaces s USING (space) "
     "WHERE len(v.vector) <> s.dim",
     "vectors whose length differs from their space's dimension", None),
    ("faces of unknown asset",
     "SELECT count(*) FROM faces f WHERE NOT EXISTS "
     "(SELECT 1 FROM assets a WHERE a.asset_id=f.asset_id)",
     "faces whose photo is not in the catalog", None),
    ("derived vectors of deleted faces",
     "SELECT count(*) FROM embeddings e WHERE NOT EXISTS "
     "(SELECT 1 FROM faces f WHERE f.face_id=e.face_id)",
     "projection vectors left behind by deleted faces",
     "DELETE FROM embeddings e WHERE NOT EXISTS (SELECT 1 FROM faces f WHERE f.face_id=e.face_id)"),
    ("faces of undetected assets",
     "SELECT count(*) FROM faces f WHERE NOT EXISTS (SELECT 1 FROM detections d "
     "WHERE d.asset_id=f.asset_id AND d.space=f.space AND d.status='ok')",
     "faces without the detection record that makes runs resumable", None),
]


def doctor(catalog: Catalog, *, repair: bool = False) -> DoctorReport:
    """Run every check; with ``repair``, fix what can be fixed without losing anything."""
    report = DoctorReport()
    interrupted = mark_interrupted(catalog) if repair else []
    report.findings.append(Finding("runs left running by a dead process", len(interrupted),
                                   "marked interrupted", repaired=bool(interrupted)))
    for name, count_sql, detail, fix_sql in CHECKS:
        n = int(catalog.scalar(count_sql))
        finding = Finding(name, n, detail)
        if n and repair and fix_sql:
            with catalog.write() as con:
                con.execute(fix_sql)
            finding.repaired = True
        report.findings.append(finding)
    for space in (s["space"] for s in catalog.spaces()):
        drift = verify(catalog, space)
        report.indexes.append(drift)
        if not drift.ok and repair:
            if drift.file_missing or drift.unreadable or drift.wrong_dim or drift.mismatched:
                index, _ = VectorIndex.open(catalog, space)
                if drift.mismatched:
                    index.rebuild()
            else:
                index, _ = VectorIndex.open(catalog, space)
                index.catch_up()
            if verify(catalog, space).ok:
                report.repaired_indexes.append(space)
    return report
