import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facelab.errors import DimensionMismatch, FacelabError
from facelab.store.catalog import Catalog
from facelab.store.exchange import export, import_faces
from facelab.store.vectors import VectorIndex

from .conftest import lfw_or_skip
from .helpers import add_faces, unit_vectors


def test_export_import_round_trip_is_exact(tmp_path):
    src = Catalog(tmp_path / "src")
    vecs = unit_vectors(50, 128, seed=1)
    add_faces(src, "dlib/resnet_v1", vecs)
    out = tmp_path / "faces.parquet"
    assert export(src, out) == 50
    dst = Catalog(tmp_path / "dst")
    r = import_faces(dst, out)
    assert (r.space, r.faces) == ("dlib/resnet_v1", 50)
    cols = "a.content_hash, f.x, f.y, f.w, f.h, f.det_score, f.quality, f.embedding"
    q = f"SELECT {cols} FROM faces f JOIN assets a USING (asset_id) ORDER BY f.face_id"
    assert src.query(q) == dst.query(q)
    assert np.array_equal(dst.vectors("dlib/resnet_v1")[1], vecs)
    assert import_faces(dst, out).faces == 0  # importing twice adds nothing


def test_import_into_space_of_other_dimension_is_refused(tmp_path):
    cat = Catalog(tmp_path / "ws")
    add_faces(cat, "dlib/resnet_v1", unit_vectors(5, 128))
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"path": ["x.jpg"], "embedding": [np.ones(512, np.float32)]}), bad)
    with pytest.raises(DimensionMismatch, match="128-d"):
        import_faces(cat, bad, space="dlib/resnet_v1")
    assert cat.scalar("SELECT count(*) FROM faces") == 5


def test_import_rejects_ragged_vectors_and_missing_columns(tmp_path):
    cat = Catalog(tmp_path / "ws")
    ragged = tmp_path / "ragged.parquet"
    pq.write_table(pa.table({"path": ["a", "b"], "embedding": [[0.1] * 128, [0.1] * 127]}),
                   ragged)
    with pytest.raises(DimensionMismatch, match=r"ragged.*128 long in 1 row \(0\); 127 long in "
                       r"1 row \(1\)"):
        import_faces(cat, ragged, space="x")
    with pytest.raises(FacelabError, match="no column 'vec'"):
        import_faces(cat, ragged, space="x", embedding_col="vec")
    with pytest.raises(FacelabError, match="--space"):
        import_faces(cat, ragged)


def test_import_lfw_reference_embeddings(tmp_path):
    lfw = lfw_or_skip()
    cat = Catalog(tmp_path / "ws")
    r = import_faces(cat, lfw / "embeddings-dlib.parquet", space="dlib/lfw-reference",
                     images_root=lfw / "images")
    assert r.faces == 6269
    ids, vecs = cat.vectors("dlib/lfw-reference")
    assert vecs.shape == (6269, 128)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    # photos present in shared/ are matched by content; the others are known but missing
    present = cat.scalar("SELECT count(*) FROM assets WHERE status='present'")
    assert present == pq.read_table(lfw / "embeddings-dlib.parquet",
                                    columns=["image_in_shared"]).column(0).to_numpy().sum()
    index, _ = VectorIndex.open(cat, "dlib/lfw-reference")
    # dlib vectors are tightly packed (different people ~0.84 cosine): the HNSW graph must
    # still find each face itself almost always
    found, _ = index.search(vecs, 1)
    assert np.mean(found[:, 0] == ids) >= 0.998


def _named_parquet(path, names, dim=32, seed=3):
    vecs = unit_vectors(len(names), dim, seed=seed)
    pq.write_table(pa.table({
        "path": [f"p{i}.jpg" for i in range(len(names))],
        "embedding": list(vecs), "identity": names,
        "bbox_x": [1.0] * len(names), "bbox_y": [2.0] * len(names),
        "bbox_w": [30.0] * len(names), "bbox_h": [40.0] * len(names)}), path)


def test_import_names_faces_from_the_identity_column_and_resumes(tmp_path):
    """`facelab import --identity-col`: the file's names are a human decision (source
    'import'); a second import (e.g. after a kill between the two steps) names what was left
    unnamed and never touches a face the user has moved since."""
    from facelab.cli import main

    parquet = tmp_path / "named.parquet"
    _named_parquet(parquet, ["Ada", "Ada", "Bo", None])
    ws = str(tmp_path / "ws")
    base = ["import", str(parquet), "--space", "dlib/x", "--workspace", ws]
    assert main(base) == 0                                   # faces only: nobody named yet
    cat = Catalog(ws)
    assert cat.scalar("SELECT count(*) FROM faces WHERE person_id IS NOT NULL") == 0
    assert main([*base, "--identity-col", "identity"]) == 0  # resumes: names the same faces
    rows = cat.query("SELECT p.name, f.assigned_by FROM faces f JOIN persons p "
                     "USING (person_id) ORDER BY f.face_id")
    assert rows == [("Ada", "import"), ("Ada", "import"), ("Bo", "import")]
    with cat.write() as con:  # the user took face 1 away from Ada
        con.execute("UPDATE faces SET person_id=NULL, assigned_by='user' WHERE face_id=1")
    assert main([*base, "--identity-col", "identity"]) == 0
    assert cat.query("SELECT person_id, assigned_by FROM faces WHERE face_id=1") == [
        (None, "user")]
    assert cat.scalar("SELECT count(*) FROM persons") == 2
