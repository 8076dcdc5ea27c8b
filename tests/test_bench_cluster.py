"""The clustering benchmark, run tiny: every measurement in its own process, JSON + PNG."""

import json

from facelab.research.bench import bench_cluster


def test_bench_cluster_quick_writes_json_and_plot(tmp_path):
    out = tmp_path / "bench"
    result = bench_cluster(quick=True, sizes=(1_200,), dense_sizes=(700,),
                           findmore_size=1_500, findmore_queries=20, out=out)
    runs = {(r["kind"], r["n"]): r for r in result["runs"]}
    assert set(runs) == {("facelab", 700), ("facelab", 1_200), ("facelab-hdbscan", 700),
                         ("dense", 700)}
    for r in runs.values():
        assert "error" not in r, r
        assert r["total_s"] > 0 and r["rss_peak_mib"] >= r["rss_data_mib"] > 0
        assert 0 <= r["bcubed_f"] <= 1 and r["n_clusters"] > 0
    ours = runs[("facelab", 1_200)]
    assert ours["params"]["method"] == "agglomerative" and ours["knn_s"] >= 0
    assert ours["bcubed_f"] > 0.95  # synthetic people are easy; a broken run is not
    fm = result["findmore"]
    assert fm["indexed"] == 1_500 and fm["queries"] == 20 and fm["k"] == 50
    assert 0 < fm["median_ms"] <= fm["p95_ms"] and fm["recall_close"] > 0.9
    summary = result["summary"]
    assert set(summary["speedup_vs_dense"]["700"]) == {"default_method", "sparse_hdbscan"}
    assert summary["goals"]["findmore_median_ms"]["goal"] == 5
    assert "speedup_at_700" in summary["goals"] and summary["errors"] == []
    saved = json.loads((out / "cluster-latest.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(summary))
    assert (out / "cluster-latest.png").stat().st_size > 10_000
    assert len(list(out.glob("cluster-2*.json"))) == 1


def test_bench_index_compares_three_ways_to_build(tmp_path):
    from facelab.research.bench import bench_index

    result = bench_index(quick=True, builds=1, out=tmp_path)
    rows = {(r["data"], r["how"]): r for r in result["summary"]}
    assert {how for _, how in rows} == {"parallel", "facelab", "single"}
    assert all(r["time_ratio"] == 1.0 for (_, how), r in rows.items() if how == "parallel")
    for data, how in rows:
        if how == "facelab":  # re-linking never leaves more faces unreachable
            assert rows[data, how]["unreachable_mean"] <= rows[data, "parallel"]["unreachable_mean"]
    if ("lfw-dev dlib", "facelab") in rows:  # and on real faces it leaves none
        assert rows["lfw-dev dlib", "facelab"]["unreachable_max"] == 0
    assert (tmp_path / "index-latest.json").exists() and (tmp_path / "index-latest.png").exists()


def test_bench_scale_runs_a_library_through_the_cli_and_places_new_faces(tmp_path):
    from facelab.research.bench_scale import NEW_FACES, bench_scale

    out = tmp_path / "bench"
    result = bench_scale(sizes=(3_000,), knn_size=3_000, methods=("ivf",),
                         out=out, scratch=tmp_path)
    assert result["summary"]["errors"] == []
    knn = {k["method"]: k for k in result["knn"]}
    assert knn["ivf"]["recall_close"] > 0.95 and knn["ivf"]["bcubed_f"] > 0.95
    assert result["summary"]["knn_time_over_ivf"]["ivf"] == 1.0
    (run,) = result["runs"]
    steps = run["steps"]
    assert [s for s in steps] == ["import", "cluster_cold", "import_new",
                                  "cluster_incremental", "import_new2",
                                  "cluster_incremental_2", "cluster_full"]
    assert all(s.get("exit", 0) == 0 and s["rss_peak_mib"] > 0 for s in steps.values())
    placed = run["placement"]
    assert placed["new_faces_with_a_cluster_of_their_person"] > NEW_FACES
    assert placed["placed_in_their_persons_cluster"] > 0.98
    assert placed["ari_incremental_vs_full"] > 0.95
    assert run["incremental_over_cold"] > 0 and run["incremental_2_over_cold"] > 0
    assert run["incremental_over_cold_wall"] > 0  # the processes, start to exit (at this
    # size both are mostly the interpreter and imports, so no ratio below 1 is promised)
    assert (out / "scale-latest.png").stat().st_size > 10_000
    assert json.loads((out / "scale-latest.json").read_text())["runs"][0]["n"] == 3_000
