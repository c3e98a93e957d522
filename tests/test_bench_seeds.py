"""The benchmark over repeated split seeds (issue 19): per-seed results, the tie rule, the
three-seed table, overshoot, busy runs, the seed flags, and the lean-deployment table (pure: no
fits, no Ray, no files but tmp_path)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ is a repo folder, not installed

from bench.table import entry_from_result, load_peers  # noqa: E402
from tests.bench_results import result  # noqa: E402


def seeded(system, table, scores, *, metric, gib, preset=None, fit=None, failed=()):
    """RESULT dicts of one system on one table, one per seed (``failed``: seeds whose run failed)."""
    out = []
    for seed, score in scores.items():
        r = result(system, table, score, metric=metric, gib=gib, preset=preset, sha=f"sha{seed}")
        r["split"]["seed"] = seed
        r["fit"] = {"wall_s": (fit or {}).get(seed, 60.0)}
        out.append(r)
    for seed in failed:
        out.append(
            {
                "status": "error",
                "system": system,
                "preset": preset,
                "time_limit_s": 60.0,
                "data": {"table": table},
                "metric": {"name": metric},
                "split": {"seed": seed},
            }
        )
    return out


def seed_groups():
    from bench import repeats

    ag = {"preset": "medium_quality"}
    ours = [
        *seeded("automl-on-ray", "auc_t", {0: 0.90, 1: 0.91, 2: 0.92}, metric="roc_auc", gib=True),
        *seeded(
            "automl-on-ray",
            "rmse_t",
            {0: 10.0, 1: 11.0, 2: 12.0},
            metric="rmse",
            gib=False,
            fit={0: 61.0, 1: 63.0, 2: 65.0},
        ),
        *seeded("automl-on-ray", "miss_t", {0: 0.80, 1: 0.82, 2: 0.90}, metric="accuracy", gib=True),
    ]
    peers = [
        # auc_t: autogluon clearly behind (a win), flaml ahead by less than the spread (a tie)
        *seeded("autogluon", "auc_t", {0: 0.88, 1: 0.885, 2: 0.89}, metric="roc_auc", gib=True, **ag),
        *seeded("flaml", "auc_t", {0: 0.905, 1: 0.915, 2: 0.925}, metric="roc_auc", gib=True),
        # rmse_t (lower is better): autogluon clearly lower (a loss), flaml clearly higher (a win)
        *seeded(
            "autogluon",
            "rmse_t",
            {0: 8.0, 1: 8.5, 2: 9.0},
            metric="rmse",
            gib=False,
            fit={0: 70.0, 1: 80.0, 2: 75.0},
            **ag,
        ),
        *seeded("flaml", "rmse_t", {0: 11.5, 1: 12.5, 2: 13.5}, metric="rmse", gib=False),
        # miss_t: autogluon has no seed 2 (compared on seeds 0 and 1 only); flaml's seed 2 failed
        *seeded("autogluon", "miss_t", {0: 0.79, 1: 0.81}, metric="accuracy", gib=True, **ag),
        *seeded("flaml", "miss_t", {0: 0.70, 1: 0.71}, metric="accuracy", gib=True, failed=[2]),
    ]
    entries = lambda rs: [entry_from_result(r) for r in rs]  # noqa: E731
    return repeats.group(entries(ours), entries(peers))


def test_tie_rule_uses_the_spread_of_the_common_seeds_in_the_metric_direction():
    from bench.repeats import compare

    v = compare({0: 0.90, 1: 0.91, 2: 0.92}, {0: 0.905, 1: 0.915, 2: 0.925}, True)
    assert (v.outcome, v.seeds, v.seeds_won) == ("tie", (0, 1, 2), 0)
    assert v.diff == pytest.approx(-0.005) and v.spread == pytest.approx(0.01)
    # paired: the peer is better by 0.005 on every seed, the split spread shared: a loss
    assert v.paired == "loss" and v.paired_sd == pytest.approx(0.0, abs=1e-12)
    v = compare({0: 0.90, 1: 0.91, 2: 0.92}, {0: 0.88, 1: 0.885, 2: 0.89}, True)
    assert (v.outcome, v.seeds_won) == ("win", 3) and v.diff == pytest.approx(0.025)
    # lower is better: our higher rmse is a loss, a clearly higher peer rmse a win
    assert compare({0: 10.0, 1: 11.0, 2: 12.0}, {0: 8.0, 1: 8.5, 2: 9.0}, False).outcome == "loss"
    assert compare({0: 10.0, 1: 11.0, 2: 12.0}, {0: 11.5, 1: 12.5, 2: 13.5}, False).outcome == "win"
    # a missing seed: only the common seeds count (over all three of ours this would be a win)
    v = compare({0: 0.80, 1: 0.82, 2: 0.90}, {0: 0.79, 1: 0.81}, True)
    assert (v.outcome, v.seeds) == ("tie", (0, 1)) and v.diff == pytest.approx(0.01)
    # paired: +0.01 on both seeds, no spread between them: a win
    assert v.paired == "win"
    # paired differences of mixed sign (+0.03, -0.01, +0.01): mean 0.01 within their sd 0.02, a tie
    assert compare({0: 0.93, 1: 0.89, 2: 0.91}, {0: 0.90, 1: 0.90, 2: 0.90}, True).paired == "tie"
    # one common seed: no spread, any difference decides; no common seed: no verdict
    assert compare({0: 0.9}, {0: 0.89, 1: 0.95}, True).outcome == "win"
    assert compare({0: 0.9}, {0: 0.9}, True).outcome == "tie"
    assert compare({0: 0.9}, {1: 0.5}, True).outcome is None


def test_seed_table_reports_mean_sd_verdicts_and_the_headline():
    from bench.repeats import PAIRED_RULE, TIE_RULE, seeds_markdown

    groups = {g.table: g for g in seed_groups()}
    v = groups["auc_t"].verdicts()
    assert v["best peer"].peer == "flaml" and v["best peer"].outcome == "tie"
    assert groups["rmse_t"].verdicts()["best peer"].peer == "autogluon-medium_quality"
    assert groups["miss_t"].failed == {"flaml": [2]}
    md = seeds_markdown(list(groups.values()))
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[4:-1]] for ln in md.splitlines()[2:5]}
    assert rows["auc_t"] == [
        "0.9100 ± 0.0100 (3)",
        "0.8850 ± 0.0050 (3)",
        "0.9150 ± 0.0100 (3)",
        "**win** +0.0250 (3/3 seeds)",
        "**tie** -0.0050 (0/3 seeds)",
        "**tie** flaml -0.0050 (0/3 seeds)",
        "loss -0.0050 ± 0.0000",
    ]
    assert rows["rmse_t"][:2] == ["11.00 ± 1.00 (3)", "8.50 ± 0.50 (3)"]
    assert rows["rmse_t"][3:5] == ["**loss** -2.50 (0/3 seeds)", "**win** +1.50 (3/3 seeds)"]
    assert rows["miss_t"][1:3] == ["0.8000 ± 0.0141 (2)", "0.7050 ± 0.0071 (2), failed s2"]
    assert rows["miss_t"][3] == "**tie** +0.0100 (2/2 seeds)"  # better on both, by less than the spread
    assert TIE_RULE in md and PAIRED_RULE in md
    assert "**At 60 s: wins 0, ties 2, losses 1 on 3 tables** against the best peer" in md
    assert "against autogluon-medium_quality: 1/1/1; against flaml: 2/1/0" in md
    assert "Paired view against the best peer: wins 1, ties 0, losses 2." in md


def test_overshoot_is_fit_wall_minus_budget_mean_and_max_over_seeds():
    from bench.repeats import overshoot_markdown

    groups = {g.table: g for g in seed_groups()}
    assert groups["rmse_t"].overshoot("automl-on-ray") == pytest.approx((3.0, 5.0))
    assert groups["rmse_t"].overshoot("autogluon-medium_quality") == pytest.approx((15.0, 20.0))
    assert groups["miss_t"].overshoot("flaml") == pytest.approx((0.0, 0.0))  # the failed seed has no time
    md = overshoot_markdown(list(groups.values()))
    row = next(ln for ln in md.splitlines() if ln.startswith("| rmse_t"))
    assert row == "| rmse_t | 60s | +3.0 (+5.0) | +15.0 (+20.0) | +0.0 (+0.0) |"
    assert "Worst: automl-on-ray +5.0 s (rmse_t 60s); autogluon-medium_quality +20.0 s (rmse_t 60s)" in md


def test_peer_results_are_kept_per_seed_and_an_ok_result_beats_a_failed_one(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for folder, seed, status, score in ((a, 1, "error", 0.0), (b, 1, "ok", 0.97), (b, 2, "ok", 0.96)):
        r = result("flaml", "car", score, status=status)
        r["split"]["seed"] = seed
        (folder / f"flaml_car_60s_s{seed}.json").write_text(json.dumps(r))
    (a / "flaml_car_60s.json").write_text(json.dumps(result("flaml", "car", 0.995)))  # no seed: seed 0
    peers = {e.seed: e for e in load_peers([a, b])}
    assert {s: (e.status, e.score) for s, e in peers.items()} == {
        0: ("ok", 0.995),
        1: ("ok", 0.97),
        2: ("ok", 0.96),
    }


def test_seeds_flags_resolve_with_seed_as_an_alias_and_peer_python_errors_say_how_to_make_the_venv(tmp_path):
    from automl.exceptions import ConfigError
    from bench import peers
    from bench.run import parse_args, resolve_seeds

    assert resolve_seeds(parse_args([])) == [0, 1, 2]
    assert resolve_seeds(parse_args(["--seed", "3"])) == [3]
    assert resolve_seeds(parse_args(["--seeds", "2,5"])) == [2, 5]
    for bad in (["--seed", "1", "--seeds", "1,2"], ["--seeds", "1,1"], ["--seeds", "x"]):
        with pytest.raises(ConfigError):
            resolve_seeds(parse_args(bad))
    (tmp_path / "run_peer.py").write_text("")
    with pytest.raises(ConfigError, match="python3 -m venv .*requirements-peers.txt.*--peer-python"):
        peers.check_python(tmp_path / "venv" / "bin" / "python", tmp_path)


# -- the big-data bench (issue 15) --------------------------------------------------------------------


def test_runs_started_on_a_busy_machine_are_named():
    from bench.repeats import busy_runs

    quiet, busy = result("flaml", "car", 0.99), result("flaml", "car", 0.98)
    quiet["environment"] = {"loadavg_start": [2.0, 2.0, 2.0], "cpus_usable": 2}
    busy["environment"] = {"loadavg_start": [9.8, 8.2, 5.4], "cpu_count": 2}
    busy["split"]["seed"] = 2
    assert busy_runs([entry_from_result(quiet), entry_from_result(busy)]) == ["flaml car 60s seed 2 (4.9)"]


def test_lean_picks_the_fastest_option_within_a_tenth_of_a_percent_in_the_metric_direction():
    import pandas as pd

    from bench.lean import lean_markdown, pick_options

    board = pd.DataFrame(
        {
            "model": [
                "weighted_ensemble",
                "weighted_ensemble_refit",
                "lightgbm_001",
                "lightgbm_001_refit",
                "linear",
            ],
            "score_val": [0.9500, 0.9500, 0.9492, 0.9492, 0.90],
            "latency_p50_ms": [9.0, 2.5, 3.0, 0.8, 0.3],
            "chosen": [True, False, False, False, False],
        }
    )
    # 0.9492 is within 0.1 % of 0.95 (0.084 %); 0.90 is not
    assert pick_options(board, True) == {
        "default": "weighted_ensemble",
        "fastest_within": "lightgbm_001_refit",
    }
    rmse = board.assign(score_val=[100.0, 100.0, 100.08, 100.08, 90.0])  # lower is better: 90 is better
    assert pick_options(rmse, False)["fastest_within"] == "linear"
    rmse = rmse.assign(score_val=[100.0, 100.0, 100.2, 100.2, 101.0])  # 0.2 % worse: only the refit twin
    assert pick_options(rmse, False)["fastest_within"] == "weighted_ensemble_refit"
    fig = {"status": "ok", "model": "lightgbm_001_refit", "score": 0.95, "one_row_p50_ms": 0.8}
    fig.update(one_row_p99_ms=1.9, rows_per_s=123456.0, model_mb=1.5, peak_rss_mb=250.0)
    res = result("automl-on-ray", "car", 0.95)
    res["deployment"] = {"default": {**fig, "model": "weighted_ensemble"}, "fastest_within": fig}
    peer = entry_from_result(result("flaml", "car", 0.99))
    text = lean_markdown([res], [peer])
    row = next(line for line in text.splitlines() if line.startswith("| car |"))
    assert "lightgbm_001_refit 0.95 | 0.80 | 1.90 | 123,456 | 1.50 | 250" in row
    assert "| 0.99 |" in row  # flaml's score beside ours
    # a seed left out of --lean-seeds has no row (its deployment options were not measured)
    res["deployment"] = {"skipped": "not measured for this seed (--lean-seeds)"}
    assert not any(line.startswith("| car |") for line in lean_markdown([res], [peer]).splitlines())


def test_lean_seeds_names_the_seeds_whose_deployment_options_are_measured():
    from bench.args import parse_args

    assert parse_args(["--lean-seeds", "0"]).lean_seeds == [0]
    assert parse_args([]).lean_seeds is None  # every seed
