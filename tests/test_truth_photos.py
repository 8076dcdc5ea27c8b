"""Truth from photos: workspaces built by ``facelab run`` from real fgnet-dev and lfw-dev
photos (the SCRFD pack of ../shared and dlib), graded by ``evaluate`` / ``simulate`` /
``calibrate --truth`` with the real truth files (fgnet-dev's ``labels.tsv``, lfw-dev's
``embeddings-*.parquet``). Every figure is checked against a computation written here,
independently of :mod:`facelab.research.truth` and :mod:`facelab.core.metrics`: which face
a row is (eyes inside the box, box overlap), BCubed and pairwise scores by their per-face
and per-pair definitions. Skipped cleanly when ../shared is absent outside CI.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from itertools import combinations
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from facelab.cli import main
from facelab.errors import FacelabError
from facelab.library.run import run
from facelab.research import simulate
from facelab.research.calibrate import calibrate
from facelab.research.evaluate import evaluate
from facelab.research.truth import TRUTH_MIN_IOU, load_truth, to_displayed
from facelab.settings import Settings
from facelab.store.catalog import Catalog
from tests.conftest import REPO, lfw_images, lfw_or_skip

SHARED = REPO.parent / "shared"
FGNET = SHARED / "data" / "fgnet-dev"
LABELS = FGNET / "labels.tsv"
PACK_ROOT = SHARED / "models" / "insightface"
PACK = "scrfd500m-mbf"
EYES = ("left_eye_x", "left_eye_y", "right_eye_x", "right_eye_y")
BOX = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")


def need(path: Path) -> Path:
    if path.exists():
        return path
    if os.environ.get("CI"):
        pytest.fail(f"CI must have ../shared beside the checkout; {path} is missing")
    pytest.skip(f"{path} not present")


def scrfd() -> Settings:
    need(PACK_ROOT / "models" / PACK)
    return Settings(model="insightface", model_root=str(PACK_ROOT), model_pack=PACK,
                    model_workers=1)


def dlib() -> Settings:
    pytest.importorskip("dlib")
    return Settings(model="dlib", model_workers=1)


def labels() -> list[dict]:
    with open(need(LABELS), newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def subset_rows() -> list[dict]:
    """5 people x 4 photos of fgnet-dev, spread over each one's ages."""
    by: dict[str, list[dict]] = {}
    for r in labels():
        by.setdefault(r["person"], []).append(r)
    out = []
    for person in sorted(by)[:5]:
        rows = by[person]
        out += [rows[int(i)] for i in np.linspace(0, len(rows) - 1, 4).round()]
    return out


#: The canvas the turned copy's photo sits on (top left): its eyes read in the wrong pixel
#: grid then fall outside every face.
CANVAS = (1200, 900)


def rotated_copy(src: Path, dst: Path) -> None:
    """``src`` at the top left of a grey canvas, stored turned a quarter left, with EXIF
    orientation 6 to show it upright."""
    im = Image.new("RGB", CANVAS, (128, 128, 128))
    im.paste(Image.open(src).convert("RGB"), (0, 0))
    exif = Image.Exif()
    exif[274] = 6
    im.transpose(Image.Transpose.ROTATE_90).save(dst, quality=95, exif=exif.tobytes())


@pytest.fixture(scope="module")
def fgnet_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The subset's photos (links, names kept so labels.tsv's paths end the same), a blank
    photo and an upright-by-EXIF copy of the first photo."""
    root = tmp_path_factory.mktemp("fgnet") / "photos"
    (root / "images").mkdir(parents=True)
    for r in subset_rows():
        os.symlink(FGNET / r["photo"], root / r["photo"])
    Image.new("RGB", (400, 500), (128, 128, 128)).save(root / "images" / "blank.JPG")
    rotated_copy(FGNET / subset_rows()[0]["photo"], root / "images" / "turned.JPG")
    return root


def build(tmp_path_factory: pytest.TempPathFactory, folder: Path, settings: Settings,
          name: str) -> Catalog:
    catalog = Catalog(tmp_path_factory.mktemp(name) / "ws")
    report = run(catalog, folder, settings=settings, progress=False)
    assert report.status == "done"
    return catalog


@pytest.fixture(scope="module")
def ws_scrfd(tmp_path_factory: pytest.TempPathFactory, fgnet_folder: Path) -> Catalog:
    return build(tmp_path_factory, fgnet_folder, scrfd(), "scrfd")


@pytest.fixture(scope="module")
def ws_dlib(tmp_path_factory: pytest.TempPathFactory, fgnet_folder: Path) -> Catalog:
    return build(tmp_path_factory, fgnet_folder, dlib(), "dlib")


@pytest.fixture(scope="module")
def lfw_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lfw_or_skip()
    root = tmp_path_factory.mktemp("lfw") / "photos"
    for src in lfw_images(16, per_person=4):
        (root / src.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, root / src.parent.name / src.name)
    return root


@pytest.fixture(scope="module")
def ws_lfw_scrfd(tmp_path_factory: pytest.TempPathFactory, lfw_folder: Path) -> Catalog:
    return build(tmp_path_factory, lfw_folder, scrfd(), "lfw-scrfd")


@pytest.fixture(scope="module")
def ws_lfw_dlib(tmp_path_factory: pytest.TempPathFactory, lfw_folder: Path) -> Catalog:
    return build(tmp_path_factory, lfw_folder, dlib(), "lfw-dlib")


# --------------------------------------------------------------------------- independent


def stored(catalog: Catalog) -> dict[str, list[tuple[int, np.ndarray, str | None]]]:
    """Photo file name -> its faces ``(face id, box, active cluster or None)``."""
    rows = catalog.query(
        "SELECT fi.path, f.face_id, f.x, f.y, f.w, f.h, CASE WHEN c.status='active' THEN "
        "f.cluster_id END FROM faces f JOIN files fi USING (asset_id) LEFT JOIN clusters c "
        "USING (cluster_id) ORDER BY f.face_id")
    out: dict[str, list] = {}
    for path, fid, x, y, w, h, cid in rows:
        out.setdefault(Path(path).name, []).append((fid, np.array([x, y, w, h], float), cid))
    return out


def by_eyes(faces: list, row: dict) -> int | None:
    """The smallest box holding both eyes (the rule, written out)."""
    e = [float(row[k]) for k in EYES]
    hold = [(b[2] * b[3], fid) for fid, b, _ in faces
            if all(b[0] <= e[2 * k] <= b[0] + b[2] and b[1] <= e[2 * k + 1] <= b[1] + b[3]
                   for k in (0, 1))]
    return min(hold)[1] if hold else None


def iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def bcubed_f(true: list, pred: list) -> float:
    """BCubed F by the per-face definition; a face in no cluster is alone in its own."""
    n = len(true)
    groups = [pred[i] if pred[i] is not None else ("noise", i) for i in range(n)]
    p = r = 0.0
    for i in range(n):
        same_c = [j for j in range(n) if groups[j] == groups[i]]
        same_t = [j for j in range(n) if true[j] == true[i]]
        both = len(set(same_c) & set(same_t))
        p += both / len(same_c)
        r += both / len(same_t)
    p, r = p / n, r / n
    return 2 * p * r / (p + r)


def pairwise(true: list, pred: list) -> tuple[float, float, float]:
    """Pairwise precision, recall, F over every pair; noise shares a cluster with nobody."""
    tp = fp = fn = 0
    for i, j in combinations(range(len(true)), 2):
        together = pred[i] is not None and pred[i] == pred[j]
        same = true[i] == true[j]
        tp += together and same
        fp += together and not same
        fn += same and not together
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return p, r, 2 * p * r / (p + r) if p + r else 0.0


def expected_clustering(catalog: Catalog, pairs: dict[int, str]) -> dict[str, float]:
    cluster = {fid: cid for faces in stored(catalog).values() for fid, _, cid in faces}
    ids = sorted(pairs)
    true, pred = [pairs[f] for f in ids], [cluster[f] for f in ids]
    p, r, f = pairwise(true, pred)
    return {"bcubed_f": bcubed_f(true, pred), "pairwise_p": p, "pairwise_r": r,
            "pairwise_f": f}


# --------------------------------------------------------------------------- fgnet-dev


@pytest.mark.parametrize("model", ["scrfd", "dlib"])
def test_labels_tsv_grades_a_workspace_built_from_the_photos(
        model: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    catalog = request.getfixturevalue(f"ws_{model}")
    faces = stored(catalog)
    want = {}
    for r in subset_rows():
        fid = by_eyes(faces[Path(r["photo"]).name], r)
        if fid is not None:
            want[fid] = r["person"]
    out = tmp_path / "ev.json"
    assert main(["evaluate", "-w", str(catalog.workspace), "--truth", str(LABELS),
                 "--pairs", "2000", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    t = rep["truth"]
    assert t["matched"] == len(want) >= 18          # the detector finds nearly all 20
    assert t["unmatched"] == 20 - len(want)
    assert t["photos_missing"] == len(labels()) - 20
    assert t["by"] == {"eyes": len(want)}
    assert rep["verification"]["n_faces"] == len(want)
    c = rep["clustering"]
    exp = expected_clustering(catalog, want)
    for key, value in exp.items():
        assert c[key] == pytest.approx(value), key
    assert c["n"] == len(want) and c["noise"] == "singletons"


def write_truth(rows: list[dict], path: Path, fmt: str) -> Path:
    cols = list(rows[0])
    if fmt == "parquet":
        pq.write_table(pa.table({c: [r[c] for r in rows] for c in cols}), path)
    else:
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, cols, delimiter="," if fmt == "csv" else "\t")
            w.writeheader()
            w.writerows(rows)
    return path


def test_csv_tsv_parquet_eyes_boxes_and_no_geometry_agree(ws_scrfd: Catalog,
                                                        fgnet_folder: Path,
                                                        tmp_path: Path) -> None:
    rows = [{"photo": r["photo"], "person": r["person"], **{k: float(r[k]) for k in EYES}}
            for r in subset_rows()]
    ref = load_truth(ws_scrfd, LABELS)
    got = {}
    for fmt in ("csv", "tsv", "parquet"):
        t = load_truth(ws_scrfd, write_truth(rows, tmp_path / f"t.{fmt}", fmt),
                       root=FGNET)
        got[fmt] = (t.face_ids.tolist(), t.identity.tolist())
        assert t.counts["photos_missing"] == 0
    assert got["csv"] == got["tsv"] == got["parquet"] == (ref.face_ids.tolist(),
                                                          ref.identity.tolist())
    # neither box nor eyes, one labelled face per photo: the face nearest the centre
    plain = [{"path": str(fgnet_folder / r["photo"]), "identity": r["person"]} for r in rows]
    t = load_truth(ws_scrfd, write_truth(plain, tmp_path / "plain.csv", "csv"))
    faces = stored(ws_scrfd)
    person_of = {fid: r["person"] for r in rows for fid, _, _ in faces[Path(r["photo"]).name]}
    assert {f: person_of[f] for f in t.face_ids.tolist()} == dict(
        zip(t.face_ids.tolist(), t.identity.tolist(), strict=True))
    found = sum(bool(faces[Path(r["photo"]).name]) for r in rows)
    assert len(t) == found >= 18 and t.counts["by"] == {"centre": found}
    # boxes: the detected box grown by a tenth still overlaps it enough, half a box off not
    boxes = []
    rows = [r for r in rows if by_eyes(faces[Path(r["photo"]).name], r) is not None]
    for r in rows:
        fid = by_eyes(faces[Path(r["photo"]).name], r)
        b = next(b for f, b, _ in faces[Path(r["photo"]).name] if f == fid)
        shift = b[2] * (0.05 if len(boxes) % 2 == 0 else 0.6)
        boxes.append({"photo": r["photo"], "person": r["person"],
                      **dict(zip(BOX, [b[0] + shift, b[1], b[2] * 1.1, b[3]], strict=True))})
    t = load_truth(ws_scrfd, write_truth(boxes, tmp_path / "boxes.tsv", "tsv"), root=FGNET)
    expect = sum(iou(np.array([r[k] for k in BOX]), next(
        b for f, b, _ in faces[Path(r["photo"]).name] if f == by_eyes(
            faces[Path(r["photo"]).name], rows[i]))) >= TRUTH_MIN_IOU
        for i, r in enumerate(boxes))
    assert 0 < expect < len(rows)
    assert t.counts["matched"] == expect and t.counts["unmatched"] == len(rows) - expect


def test_exif_orientation_is_respected(ws_scrfd: Catalog, tmp_path: Path) -> None:
    first = subset_rows()[0]
    eyes = np.array([float(first[k]) for k in EYES]).reshape(2, 2)
    in_file = np.column_stack([eyes[:, 1], CANVAS[0] - eyes[:, 0]])  # ROTATE_90 of the canvas
    rows = [{"photo": "images/turned.JPG", "person": first["person"],
             **dict(zip(EYES, eyes.ravel().tolist(), strict=True))}]
    displayed = write_truth(rows, tmp_path / "displayed.tsv", "tsv")
    rows[0].update(dict(zip(EYES, in_file.ravel().tolist(), strict=True)))
    file_px = write_truth(rows, tmp_path / "file.tsv", "tsv")
    root = ws_scrfd.query("SELECT root FROM files LIMIT 1")[0][0]
    turned = next(f for f, _, _ in stored(ws_scrfd)["turned.JPG"])
    assert load_truth(ws_scrfd, displayed, root=root).face_ids.tolist() == [turned]
    assert load_truth(ws_scrfd, file_px, root=root, pixels="file").face_ids.tolist() == [turned]
    with pytest.raises(FacelabError, match="1 a photo where no detected face"):
        load_truth(ws_scrfd, file_px, root=root)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_to_displayed_follows_pil(orientation: int) -> None:
    from PIL import ImageOps

    raw = Image.new("L", (7, 4))
    raw.putpixel((5, 1), 255)
    exif = Image.Exif()
    exif[274] = orientation
    raw.info["exif"] = exif.tobytes()
    shown = np.asarray(ImageOps.exif_transpose(raw))
    y, x = np.argwhere(shown == 255)[0]
    # pixel centres: (5.5, 1.5) in the file grid
    got = to_displayed(np.array([[5.5, 1.5]]), orientation, shown.shape[1], shown.shape[0])
    assert got[0].tolist() == [x + 0.5, y + 0.5]


def test_simulate_counts_unmatched_truth_as_not_named(ws_scrfd: Catalog, fgnet_folder: Path,
                                                      tmp_path: Path) -> None:
    rows = [{"photo": r["photo"], "person": r["person"], **{k: float(r[k]) for k in EYES}}
            for r in subset_rows()]
    first = rows[0]
    # a labelled face on the blank photo, and a second one on a photo where nothing was found
    rows.append({**first, "photo": "images/blank.JPG"})
    rows.append({**first, "photo": rows[5]["photo"], **dict.fromkeys(EYES, -10.0)})
    truth_file = write_truth(rows, fgnet_folder / "mine.tsv", "tsv")
    truth = load_truth(ws_scrfd, truth_file)
    faces = stored(ws_scrfd)
    matched = sum(by_eyes(faces.get(Path(r["photo"]).name, []), r) is not None for r in rows)
    assert truth.counts["matched"] == matched and truth.counts["unmatched"] == len(rows) - matched
    assert truth.counts["photos_missing"] == 0
    # target faces: every labelled face of a person labelled twice or more, found or not
    people = [r["person"] for r in rows]
    target = sum(people.count(p) >= 2 for p in people)
    lost = len(rows) - matched
    result = simulate.simulate(ws_scrfd, truth, strategy="plain", target_share=1.0,
                               progress=False)
    assert result.target_faces == target and result.target_unmatched == lost
    # the oracle names every face it can see; the lost ones stay not named
    assert result.accuracy == pytest.approx((target - lost) / target)
    assert result.named_share == pytest.approx((target - lost) / target)
    assert not result.reached
    out = tmp_path / "sim.json"
    assert main(["simulate", "-w", str(ws_scrfd.workspace), "--truth", str(truth_file),
                 "--strategy", "plain", "--target-share", "0.8", "--no-progress",
                 "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["target_unmatched"] == lost and rep["target_faces"] == target
    assert rep["truth"]["unmatched"] == lost and rep["reached"]


def test_calibrate_on_a_truth_from_photos(ws_dlib: Catalog) -> None:
    truth = load_truth(ws_dlib, LABELS)
    cal, = calibrate(ws_dlib, truth.space, Settings(), truth=truth, dry_run=True)
    assert cal.n_faces == len(truth) and cal.n_people == 5
    assert cal.params["truth"] == str(LABELS)


def test_a_truth_file_without_photo_or_identity_column_is_refused(
        ws_scrfd: Catalog, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    no_photo = write_truth([{"person": "001", "x1": 1.0}], tmp_path / "a.csv", "csv")
    no_name = write_truth([{"photo": "images/001A02.JPG", "age": 3}], tmp_path / "b.tsv",
                          "tsv")
    ws = str(ws_scrfd.workspace)
    assert main(["evaluate", "-w", ws, "--truth", str(no_photo)]) == 2
    assert "has no photo column (path or photo, or content_hash)" in capsys.readouterr().err
    assert main(["simulate", "-w", ws, "--truth", str(no_name)]) == 2
    assert "has no identity column (identity or person" in capsys.readouterr().err
    assert main(["calibrate", "-w", ws, "--truth", str(no_name), "--identity-col", "who"]) == 2
    assert "has no column 'who'" in capsys.readouterr().err
    # two labelled faces without box or eyes on a photo holding one: which is which?
    one = next(r["photo"] for r in subset_rows()
               if len(stored(ws_scrfd)[Path(r["photo"]).name]) == 1)
    two = write_truth([{"photo": one, "person": p} for p in ("001", "002")],
                      tmp_path / "d.tsv", "tsv")
    with pytest.raises(FacelabError, match="holds 1 faces but 2 rows"):
        load_truth(ws_scrfd, two, root=FGNET)
    garbage = tmp_path / "c.parquet"
    garbage.write_bytes(b"PAR1 not really")
    assert main(["evaluate", "-w", ws, "--truth", str(garbage)]) == 2
    assert "is neither Parquet nor a readable CSV/TSV" in capsys.readouterr().err


# --------------------------------------------------------------------------- lfw-dev


@pytest.mark.parametrize(("model", "parquet"), [("scrfd", "embeddings-mobilefacenet.parquet"),
                                                ("scrfd", "embeddings-dlib.parquet"),
                                                ("dlib", "embeddings-dlib.parquet")])
def test_lfw_embeddings_parquet_grades_a_workspace_built_from_its_photos(
        model: str, parquet: str, lfw_folder: Path, request: pytest.FixtureRequest) -> None:
    ws_lfw = request.getfixturevalue(f"ws_lfw_{model}")
    table = pq.read_table(lfw_or_skip() / parquet,
                          columns=["path", "identity", *BOX]).to_pylist()
    faces = stored(ws_lfw)
    ours = {f"{p.parent.name}/{p.name}" for p in lfw_folder.rglob("*.jpg")}
    want: dict[int, str] = {}
    rows = [r for r in table if r["path"] in ours]
    taken: set[int] = set()
    for r in rows:
        box = np.array([r[k] for k in BOX], float)
        cands = sorted((iou(box, b), fid) for fid, b, _ in faces.get(Path(r["path"]).name, []))
        if cands and cands[-1][0] >= TRUTH_MIN_IOU and cands[-1][1] not in taken:
            want[cands[-1][1]] = r["identity"]
            taken.add(cands[-1][1])
    rep = evaluate(ws_lfw, only(ws_lfw), truth=lfw_or_skip() / parquet, n_diff=2000)
    t = rep["truth"]
    assert t["matched"] == len(want) >= len(rows) - 1
    assert t["unmatched"] == len(rows) - len(want)
    assert t["photos_missing"] == len(table) - len(rows)
    c = rep["clustering"]
    for key, value in expected_clustering(ws_lfw, want).items():
        assert c[key] == pytest.approx(value), key
    result = simulate.simulate(ws_lfw, lfw_or_skip() / parquet, strategy="best",
                               progress=False)
    people = [r["identity"] for r in rows]
    assert result.target_faces == sum(people.count(p) >= 2 for p in people)
    assert result.target_unmatched == t["unmatched"] and result.reached


def only(catalog: Catalog) -> str:
    (space,) = [s["space"] for s in catalog.spaces()]
    return space
