"""The benchmark's comparison table and peer merging (pure: no fits, no Ray, no files but tmp_path)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ is a repo folder, not installed

from bench.curves import anytime_curve, curve_summary
from bench.table import (
    Entry,
    advantage,
    comparison_markdown,
    ensembling_markdown,
    entry_from_result,
    load_peers,
    parse_peers_md,
    rank,
)
from tests.bench_results import result  # noqa: E402

PEERS_MD = """# Peer scores

| table | budget | metric | autogluon-medium_quality | flaml | best |
|---|---|---|---|---|---|
| car | 60s | accuracy | 0.9827 (fit 37s, 1-row 16.0ms) | 0.9971 (fit 69s, 1-row 16.1ms) | flaml |
| diamonds | 60s | rmse | 520.8 (fit 65s, 1-row 116.3ms) | 535.3 (fit 62s, 1-row 27.2ms) | autogluon |
"""


def test_entry_from_peer_result_uses_file_stem_and_preset_label():
    e = entry_from_result(result("autogluon", "car", 0.98, preset="medium_quality"))
    assert (e.table, e.budget, e.system, e.score, e.peak_mb, e.model_mb) == (
        "car",
        60.0,
        "autogluon-medium_quality",
        0.98,
        400.0,
        1.5,
    )


def test_our_entry_prefers_the_process_tree_memory_and_error_runs_have_no_numbers():
    ours = result("automl-on-ray", "car", 0.99)
    ours["memory"]["peak_tree_pss_mb"] = 1200.0
    ours["data"]["table"] = "car"
    assert entry_from_result(ours).peak_mb == 1200.0
    err = entry_from_result(
        {
            "status": "error",
            "system": "automl-on-ray",
            "time_limit_s": 20,
            "data": {"table": "credit_g"},
            "metric": {"name": "roc_auc"},
        }
    )
    assert (err.status, err.score, err.metric) == ("error", None, "roc_auc")


def test_parse_peers_md_reads_every_system_cell_and_skips_the_best_column():
    entries = {(e.table, e.system): e for e in parse_peers_md(PEERS_MD)}
    assert set(entries) == {
        ("car", "autogluon-medium_quality"),
        ("car", "flaml"),
        ("diamonds", "autogluon-medium_quality"),
        ("diamonds", "flaml"),
    }
    d = entries[("diamonds", "flaml")]
    assert (d.score, d.fit_s, d.latency_ms, d.budget, d.greater_is_better) == (535.3, 62.0, 27.2, 60.0, False)


def test_peer_jsons_take_precedence_over_peers_md(tmp_path):
    (tmp_path / "peers").mkdir()
    (tmp_path / "peers" / "flaml_car_60s.json").write_text(json.dumps(result("flaml", "car", 0.995)))
    (tmp_path / "PEERS.md").write_text(PEERS_MD)
    peers = {(e.table, e.system): e for e in load_peers(tmp_path / "peers", tmp_path / "PEERS.md")}
    assert peers[("car", "flaml")].score == 0.995 and peers[("car", "flaml")].rows_per_s == 1000.0
    assert peers[("car", "autogluon-medium_quality")].source == "PEERS.md"
    assert len(peers) == 4


@pytest.mark.parametrize(
    "gib, ours, expected_rank, expected_adv",
    [
        (True, 0.99, 1, 0.99 - 0.98),  # accuracy: higher wins
        (False, 530.0, 2, 520.8 - 530.0),  # rmse: lower wins; we trail the best peer by 9.2
    ],
)
def test_rank_and_advantage_follow_the_metric_direction(gib, ours, expected_rank, expected_adv):
    metric = "accuracy" if gib else "rmse"
    peers = [
        Entry("t", 60, "a", metric, gib, score=0.98 if gib else 520.8),
        Entry("t", 60, "b", metric, gib, score=0.97 if gib else 535.3),
    ]
    me = Entry("t", 60, "automl-on-ray", metric, gib, score=ours)
    assert rank([me, *peers])["automl-on-ray"] == expected_rank
    assert advantage(me, peers) == pytest.approx(expected_adv)


def test_comparison_puts_peers_under_our_row_only_at_the_same_budget_and_flags_split_mismatch():
    other = Entry("car", 60, "flaml-json", "accuracy", True, score=0.5, split_sha="zzz")
    peers = parse_peers_md(PEERS_MD) + [other]
    ours = [
        Entry(
            "car",
            60,
            "automl-on-ray",
            "accuracy",
            True,
            score=0.9942,
            fit_s=21.0,
            rows_per_s=2381.0,
            latency_ms=5.1,
            peak_mb=1260.0,
            model_mb=11.7,
            split_sha="abc",
        ),
        Entry("car", 300, "automl-on-ray", "accuracy", True, score=0.9971),
    ]
    md = comparison_markdown(ours, peers)
    lines = md.splitlines()
    car60 = [ln for ln in lines if ln.startswith("| car | 60s")]
    systems = [ln.split("|")[4].strip() for ln in car60]
    assert systems == ["automl-on-ray", "autogluon-medium_quality", "flaml", "flaml-json"]
    assert "| 0.9942 | 2 | -0.0029 | 21.0 | 2,381 | 5.10 | 1,260 | 11.70 |" in car60[0]
    car300 = [ln for ln in lines if ln.startswith("| car | 300s")]
    assert len(car300) == 1 and "| 0.9971 | - | - |" in car300[0]  # no peer at 300 s
    assert "on 0 of 1 (table, budget) pairs" in md
    assert "WARNING: car: our test split differs" in md


def test_anytime_curve_keeps_the_best_so_far_in_completion_order():
    import pandas as pd

    board = pd.DataFrame(
        {
            "model": ["a", "b", "c", "d", "ens"],
            "status": ["completed", "completed", "stopped", "completed", "ensemble"],
            "score_val": [0.5, 0.4, 0.9, 0.45, 0.3],
            "end_s": [3.0, 1.0, 2.0, 5.0, None],
        }
    )
    pts = anytime_curve(board, greater_is_better=False, offset_s=10.0)
    assert [(p["t_s"], p["best"]) for p in pts] == [(11.0, 0.4), (13.0, 0.4), (15.0, 0.4)]
    s = curve_summary(pts)
    assert (s["first_result_s"], s["time_to_best_s"], s["completed_trials"]) == (11.0, 11.0, 3)


def test_strategy_table_reads_the_best_score_reached_by_each_checkpoint():
    from bench.strategies import best_at, strategies_markdown

    curve = [{"t_s": 12.0, "best": 0.80}, {"t_s": 45.0, "best": 0.85}, {"t_s": 100.0, "best": 0.86}]
    assert best_at(curve, 10.0) is None and best_at(curve, 30.0) == 0.80 and best_at(curve, 60.0) == 0.85
    ok = {
        "status": "ok",
        "search": "random",
        "data": {"table": "adult"},
        "metric": {"name": "roc_auc", "value": 0.9},
        "fit": {"wall_s": 121.0},
        "system_details": {
            "anytime_curve": curve,
            "curve_summary": {"completed_trials": 3},
            "chosen": "lgbm",
        },
    }
    failed = {"status": "error", "error": "boom", "args": {"search": "asha"}, "data": {"table": "adult"}}
    rows = strategies_markdown([ok, failed]).splitlines()[2:]
    assert rows[0] == "| adult | roc_auc | random | 0.8 | 0.85 | 0.86 | 3 | lgbm | 0.9 | 121.0 |"
    assert rows[1].startswith("| adult | - | asha | - | - | - |") and "error: boom" in rows[1]


def test_ensembling_table_compares_the_chosen_model_with_the_best_single_one_by_metric_direction():
    def run(table: str, single: float, ens: float | None, gib: bool) -> dict:
        res = result("automl-on-ray", table, 0.0, gib=gib, budget=300.0)
        res["metric"] = {"name": "accuracy" if gib else "rmse", "greater_is_better": gib}
        chosen = {"model": "weighted_ensemble", "score_test": ens} if ens is not None else None
        res["options_test"] = {
            "best_single": {"model": "lightgbm_003", "score_test": single},
            "weighted_ensemble": chosen,
            "stack": None,
            "chosen": chosen or {"model": "lightgbm_003", "score_test": single},
        }
        return res

    md = ensembling_markdown(
        [
            run("car", 0.90, 0.92, True),
            run("diamonds", 520.0, 530.0, False),
            run("adult", 0.93, None, True),
            run("wine", 0.6, 0.7, True) | {"status": "error"},
        ]
    )
    lines = md.splitlines()
    assert (
        len(
            [
                ln
                for ln in lines
                if ln.startswith("| car") or ln.startswith("| diamonds") or ln.startswith("| adult")
            ]
        )
        == 3
        and "wine" not in md
    )
    assert "+0.02" in next(ln for ln in lines if ln.startswith("| car"))
    assert "-10" in next(ln for ln in lines if ln.startswith("| diamonds"))  # rmse went up: a loss
    assert "at least as well as the best single model on the test split in 2 of 3 runs" in md


def test_scaling_speed_up_counts_trials_finished_per_search_second():
    from bench.scaling import scaling_markdown

    def cpus(c, completed, search_s):
        return {
            "status": "ok",
            "kind": "cpus",
            "family": "lightgbm",
            "concurrency": c,
            "fit_wall_s": 30.0,
            "search_s": search_s,
            "trials_by_status": {"completed": completed, "stopped": 1},
            "cpu_s": 40.0,
            "peak_tree_pss_mb": 1200.0,
        }

    res = {
        "cap_s": 30,
        "cpu_trials": 4,
        "cpu_rows": 50_000,
        "runs": [
            cpus(1, 1, 10.0),
            cpus(2, 3, 15.0),  # time-capped: 0.1 vs 0.2 trials/s
            {
                "status": "skipped",
                "kind": "rows",
                "family": "knn",
                "rows": 1_000_000,
                "reason": "knn does not apply to a binary task of 1,000,000 rows",
            },
        ],
    }
    md = scaling_markdown(res)
    assert "| lightgbm | 2 | 3 | 30.0 | 15.0 | 2.00x |" in md
    assert "Skipped: knn at 1,000,000 rows" in md


def test_the_summary_header_carries_the_machines_speed_probe():
    """Runs of different days compare only beside the machine's speed at the time (the same code
    trained 40 % fewer trials in a 60 s fit on a slow day): machine.json holds a probe of two fixed
    single-threaded workloads, and the summary's first line quotes it."""
    from bench.measure import speed_probe
    from bench.summary import describe

    probe = speed_probe(repeats=1)
    assert set(probe) == {"python_loop_s", "lightgbm_fit_s"} and all(0 < v < 60 for v in probe.values())
    line = describe({"cpu_model": "x", "cpus_usable": 2, "loadavg": (1.0, 1.0, 1.0), "speed_probe": probe})
    assert f"speed probe {probe['python_loop_s']:.2f} s Python loop" in line
    assert "speed probe" not in describe({"cpu_model": "x", "cpus_usable": 2})  # older machine.json
