"""People who grow up (facelab.research.growing_up, notebooks/07_growing_up.ipynb): a
person's faces on a time axis, the default clusters that split them, how each got named."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from facelab.errors import ConfigError
from facelab.people import labeling, naming, propose, review
from facelab.research import growing_up as gu
from facelab.research.truth import Truth
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from facelab.store.snapshot import copy_workspace
from tests.conftest import REPO
from tests.people_helpers import add_cluster, add_photos

matplotlib.use("Agg")

SPACE = "insightface/buffalo_l"


def grown_library(tmp_path: Path) -> tuple[Catalog, Truth, dict[str, np.ndarray]]:
    """Anna as a child (1990-1993) and as an adult (2010-2013), two faces that share
    nothing; Ben, 4 faces of 2000-2003; a stranger seen once. Nothing is named."""
    rng = np.random.default_rng(3)
    centre = np.linalg.qr(rng.standard_normal((64, 4)))[0].T  # 4 orthonormal directions
    src = [0] * 4 + [1] * 4 + [2] * 4 + [3]
    vecs = centre[src] + 0.05 * rng.standard_normal((len(src), 64))
    years = [1990, 1991, 1992, 1993, 2010, 2011, 2012, 2013, 2000, 2001, 2002, 2003, None]
    catalog = Catalog(tmp_path / "ws")
    ids = add_photos(catalog, SPACE, vecs, years=years)
    who = np.array(["Anna"] * 8 + ["Ben"] * 4 + ["Sam"], object)
    order = np.argsort(ids)
    truth = Truth(space=SPACE, face_ids=ids[order], identity=who[order],
                  labels=np.unique(who, return_inverse=True)[1][order].astype(np.int64),
                  paths=np.array([f"p{i}" for i in ids[order]], object))
    faces = {"child": ids[:4], "adult": ids[4:8], "ben": ids[8:12], "sam": ids[12:]}
    return catalog, truth, faces


def faces_state(catalog: Catalog) -> list[tuple]:
    return catalog.query("SELECT face_id, person_id, cluster_id, revision FROM faces "
                         "ORDER BY face_id")


def test_split_person_shows_its_clusters_years_and_no_write(tmp_path: Path) -> None:
    catalog, truth, faces = grown_library(tmp_path)
    before = faces_state(catalog)
    tl = gu.timeline(catalog, truth, settings=Settings())
    assert faces_state(catalog) == before  # clustered on a copy
    rows = {r["identity"]: r for r in gu.split_people(tl)}
    anna, ben = rows["Anna"], rows["Ben"]
    assert (anna["clusters"], ben["clusters"], rows["Sam"]["clusters"]) == (2, 1, 0)
    assert gu.split_people(tl)[0]["identity"] == "Anna"  # the most split comes first
    assert (anna["first_year"], anna["last_year"], anna["span"]) == (1990, 2013, 23)
    assert rows["Sam"]["first_year"] is None and rows["Sam"]["unclustered"] == 1
    assert "named" not in anna  # no kept workspace: nothing to say about naming
    # the child and the adult are two clusters; Anna's main one holds 4 of her 8 faces
    child = set(tl.cluster[np.isin(tl.face_id, faces["child"])].tolist())
    adult = set(tl.cluster[np.isin(tl.face_id, faces["adult"])].tolist())
    assert len(child) == len(adult) == 1 and child != adult and None not in child
    assert int(tl.main()[tl.identity == "Anna"].sum()) == 4
    s = gu.summary(tl)
    assert (s["people"], s["people_split"], s["max_clusters"], s["pieces"]) == (3, 1, 2, 5)
    ax = gu.plot_timeline(tl, "Anna")
    assert len(ax.get_yticklabels()) == 2 and "2 default clusters" in ax.get_title()
    with pytest.raises(ConfigError, match="no face"):
        gu.plot_timeline(tl, "Nobody")
    with pytest.raises(ConfigError, match="kept"):
        gu.plot_mechanisms(tl)


def test_how_each_face_got_named_in_a_kept_workspace(tmp_path: Path) -> None:
    catalog, truth, faces = grown_library(tmp_path)
    add_cluster(catalog, "c1-child", SPACE, faces["child"])
    add_cluster(catalog, "c2-adult", SPACE, faces["adult"])
    add_cluster(catalog, "c-ben", SPACE, faces["ben"])
    kept = copy_workspace(catalog, tmp_path / "kept")
    settings = Settings()
    anna = labeling.label_cluster(kept, "c1-child", "Anna", settings=settings).person_id
    # a "who is this?" page: Anna's adult faces are proposed for Anna, the only named
    # person; two of them are accepted
    propose.propose_faces(kept, SPACE, settings)
    page = [p for p in review.pending(kept, source=propose.SOURCE)
            if p["face_id"] in faces["adult"][:2].tolist()]
    assert [p["person_id"] for p in page] == [anna, anna]
    review.accept(kept, [p["suggestion_id"] for p in page])
    # Ben's cluster is accepted as a person <-> cluster proposal
    ben = naming.create_person(kept, "Ben")
    propose.accept_cluster(kept, "c-ben", ben, settings=settings)
    naming.move_faces(kept, faces["sam"].tolist(), "Sam")        # named one by one
    naming.move_faces(kept, faces["adult"][2:3].tolist(), "Ben")  # ... wrongly

    tl = gu.timeline(catalog, truth, kept={"manual": kept}, recluster=False)
    how = dict(zip(tl.face_id.tolist(), tl.how["manual"].tolist(), strict=True))
    assert {how[f] for f in faces["child"].tolist()} == {gu.CLUSTER_LABEL}
    assert {how[f] for f in faces["ben"].tolist()} == {gu.CLUSTER_PROPOSAL}
    assert [how[f] for f in faces["adult"].tolist()] == [
        gu.PROPOSAL_PAGE, gu.PROPOSAL_PAGE, "named one by one", "unnamed"]
    assert how[int(faces["sam"][0])] == "named one by one"
    wrong = tl.face_id[tl.wrong["manual"]].tolist()
    assert wrong == [int(faces["adult"][2])]

    rows = {r["identity"]: r for r in gu.split_people(tl, "manual")}
    assert rows["Anna"]["clusters"] == 2  # the workspace's own clusters (recluster=False)
    assert rows["Anna"]["named"] == {gu.CLUSTER_LABEL: 4, gu.PROPOSAL_PAGE: 2,
                                     "named one by one": 1, "unnamed": 1}
    assert rows["Anna"]["wrong"] == 1 and rows["Ben"]["wrong"] == 0
    # the adult piece (a tie: the lower cluster id is the main one) was joined by the page
    assert rows["Anna"]["joined_by"] == {gu.PROPOSAL_PAGE: 2, "named one by one": 1,
                                         "unnamed": 1}
    s = gu.summary(tl)
    assert s["named_by"]["manual"][gu.PROPOSAL_PAGE] == 2 and s["wrong"] == {"manual": 1}
    table = gu.format_people(gu.split_people(tl, "manual"))
    assert "| Anna | 8 | 2 |" in table and "proposal page" in table
    row = next(r for r in tl.rows() if r["face_id"] == int(faces["adult"][0]))
    assert row == {"face_id": int(faces["adult"][0]), "identity": "Anna", "year": 2010,
                   "cluster": "c2-adult", "how": gu.PROPOSAL_PAGE, "wrong": False}
    ax = gu.plot_timeline(tl, "Anna", strategy="manual")
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {
        gu.CLUSTER_LABEL, gu.PROPOSAL_PAGE, "named one by one", "unnamed", "named wrong"}
    ax = gu.plot_mechanisms(tl, pieces=True)
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {gu.PROPOSAL_PAGE}
    with pytest.raises(ConfigError, match="no workspace"):
        gu.timeline(catalog, truth, kept=tmp_path / "nothing-here")


def test_a_label_whose_evidence_records_the_proposal_is_a_cluster_proposal(
        tmp_path: Path) -> None:
    catalog, _, faces = grown_library(tmp_path)
    anna = naming.create_person(catalog, "Anna")
    naming.assign_faces(catalog, faces["child"], anna, source="cluster_label", action="label",
                        evidence={"cluster_id": "c1", "proposal": {"score": 0.6}})
    naming.assign_faces(catalog, faces["adult"][:1], anna, source="cluster_label",
                        action="label", evidence={"cluster_id": "c2"})
    how, person = gu.how_named(catalog, np.r_[faces["child"][:1], faces["adult"][:2]])
    assert how.tolist() == [gu.CLUSTER_PROPOSAL, gu.CLUSTER_LABEL, "unnamed"]
    assert person.tolist() == [anna, anna, -1]


# --------------------------------------------------------------------------- notebook

FGNET = REPO.parent / "shared" / "data" / "fgnet-dev"
PACK_ROOT = REPO.parent / "shared" / "models" / "insightface"


@pytest.mark.slow
def test_growing_up_notebook_on_one_fgnet_half(tmp_path: Path) -> None:
    """Person half b of fgnet-dev (17 people, 216 photos), detected by the notebook itself
    with the scrfd500m-mbf pack: every strategy's clicks and the figures."""
    if not ((FGNET / "labels.tsv").is_file() and (PACK_ROOT / "models" / "scrfd500m-mbf").is_dir()):
        if os.environ.get("CI"):
            pytest.fail(f"CI must have ../shared beside the checkout; {FGNET} or {PACK_ROOT} "
                        "is missing")
        pytest.skip("../shared (fgnet-dev, the scrfd500m-mbf pack) not present")
    pm = pytest.importorskip("papermill")
    pytest.importorskip("insightface")
    from facelab.research.detect_eval import person_half

    header, *rows = (FGNET / "labels.tsv").read_text().splitlines()
    half = [r for r in rows if person_half(r.split("\t")[1]) == "b"]
    data = tmp_path / "half-b"
    (data / "images").mkdir(parents=True)
    for r in half:
        photo = r.split("\t")[0]
        (data / photo).symlink_to(FGNET / photo)
    (data / "labels.tsv").write_text("\n".join([header, *half]) + "\n")
    out = tmp_path / "report"
    strategies = ["best", "clusters", "proposals", "family"]
    pm.execute_notebook(
        str(REPO / "notebooks" / "07_growing_up.ipynb"), str(tmp_path / "07-out.ipynb"),
        parameters={"workspace": str(tmp_path / "ws"), "photos": str(data / "images"),
                    "model_root": str(PACK_ROOT), "truth_file": str(data / "labels.tsv"),
                    "strategies": strategies, "keep_dir": str(tmp_path),
                    "out_dir": str(out)},
        cwd=str(REPO / "notebooks"), progress_bar=False, kernel_name="python3")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["truth"]["labelled"] == len(half) and summary["truth"]["matched"] > 200
    assert set(summary["clicks"]) == set(strategies)
    floor = summary["simulation"]["floor"]
    assert floor == 17
    for s in strategies:
        assert floor <= summary["clicks"][s] <= 3 * floor
        assert summary["clicks_to_98"][s] is not None  # every strategy reached 98 %
    gu_summary = summary["growing_up"]
    assert gu_summary["people"] == 17 and gu_summary["people_split"] >= 1
    assert set(gu_summary["named_by"]) == set(strategies)
    # the proposal strategies name faces through "who is this?" pages
    assert gu_summary["named_by"]["family"].get(gu.PROPOSAL_PAGE, 0) > 0
    assert summary["people"][0]["clusters"] == gu_summary["max_clusters"]
    assert len(summary["figures"]) == 4  # curves, mechanisms, two timelines
    for name in summary["figures"]:
        assert (out / name).stat().st_size > 10_000
    nb = json.loads((tmp_path / "07-out.ipynb").read_text())
    images = sum("image/png" in o.get("data", {}) for c in nb["cells"]
                 if c["cell_type"] == "code" for o in c.get("outputs", []))
    assert images >= 4
