"""HyperBand and BOHB brackets sized to the trial budget (tuning.brackets): no Ray cluster needed,
the schedulers are driven directly with stand-in trials."""

import pytest

from tuning.brackets import BudgetedBOHB, BudgetedHyperBand, bracket_room
from tuning.strategies import HB_ETA, HB_MAX_STEPS


def scheduler(cls, max_trials):
    return cls(
        time_attr="training_iteration",
        metric="m",
        mode="max",
        max_t=HB_MAX_STEPS,
        reduction_factor=HB_ETA,
        max_trials=max_trials,
    )


def brackets_after(sched, n_trials):
    for i in range(n_trials):
        sched.on_trial_add(None, f"trial-{i}")  # a bracket only stores the trial as a key
    return [b for band in sched._hyperbands for b in band if b is not None]


def test_room_is_rays_or_the_trials_left():
    assert bracket_room(81, 100_000, 0) == 81
    assert bracket_room(81, 3, 0) == 3
    assert bracket_room(8, 10, 5) == 5
    assert bracket_room(8, 3, 3) == 1  # a trial beyond the budget (a resumed one) still gets a place


def test_bohb_with_three_trials_halves_them():
    """Ray's first BOHB bracket has room for 81 trials and halves to ceil(81 / 3) = 27, so three
    trials were all kept, paused and resumed at every rung; capped at 3, it keeps one."""
    (bracket,) = brackets_after(scheduler(BudgetedBOHB, 3), 3)
    assert bracket._n == 3 and bracket.filled()
    for i, trial in enumerate(list(bracket._live_trials)):
        bracket._live_trials[trial] = {"m": i, "training_iteration": 1}  # each reached rung 1
    assert bracket.cur_iter_done()
    good, bad = bracket.successive_halving("m", 1.0)
    assert good == ["trial-2"] and sorted(bad) == ["trial-0", "trial-1"]


def test_an_unbounded_budget_keeps_rays_brackets():
    sched = scheduler(BudgetedBOHB, 100_000)
    (first,) = brackets_after(sched, 1)
    assert first._n == 81 and first._r == 1  # BOHB opens its largest bracket first
    hb = brackets_after(scheduler(BudgetedHyperBand, 100_000), 6)
    assert [b._n for b in hb] == [5, 8]  # synchronous HyperBand opens its smallest first


@pytest.mark.parametrize("cls", [BudgetedHyperBand, BudgetedBOHB])
def test_the_last_bracket_holds_what_the_budget_has_left(cls):
    # HyperBand: room 5, then 8 capped at the 2 left; BOHB: 81 capped at 7
    rooms = [b._n for b in brackets_after(scheduler(cls, 7), 7)]
    assert sum(rooms) == 7 and all(b >= 1 for b in rooms)
    assert rooms == ([5, 2] if cls is BudgetedHyperBand else [7])
