"""A search returns soon after Tune stopped its trials, however long the step they were in."""

import time

import pytest

pytestmark = pytest.mark.ray

STUCK_S = 60.0  # the step a trial is in when the search stops it: far longer than Tune's own wait


def test_a_trial_stuck_in_a_step_does_not_hold_the_search_after_its_hard_end(ray_session, tmp_path):
    """Tune waits up to 10 s for a stopped trial's actor before it kills it (Ray 2.60); the
    search's callback ends the actor of a trial stopped in the middle of a step at once. The
    trial that finished by itself keeps its checkpoint."""
    from ray import tune

    from tuning.linger import EndStoppedTrials
    from tuning.stoppers import SearchStopper

    def _trainable(config):  # defined here: Ray pickles it by value for its workers
        import os
        import tempfile

        from ray import tune

        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "model.txt"), "w") as f:
                f.write(str(config["x"]))
            tune.report({"objective": 1.0}, checkpoint=tune.Checkpoint.from_directory(d))
        if config["x"] == 1:
            time.sleep(STUCK_S)  # stuck in its next step (a long library call)
            tune.report({"objective": 2.0})

    stopper = SearchStopper(target_objective=None, patience=None, hard_end=time.time() + 1e9)
    end = EndStoppedTrials(stopper)

    class HardEnd(tune.Callback):  # the time limit: once x=0 has finished and x=1 is in its long step
        def on_step_end(self, iteration, trials, **info):
            status = {t.config["x"]: t.status for t in trials}
            reported = any(t.config["x"] == 1 and t.last_result.get("objective") for t in trials)
            if status.get(0) == "TERMINATED" and reported and stopper.hard_end > time.time():
                stopper.hard_end = time.time()

    tuner = tune.Tuner(
        _trainable,
        param_space={"x": tune.grid_search([0, 1])},
        tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=False),
        run_config=tune.RunConfig(
            storage_path=str(tmp_path), name="linger", stop=stopper, callbacks=[HardEnd(), end], verbose=0
        ),
    )
    grid = tuner.fit()
    waited = time.time() - stopper.hard_end
    assert end.killed and len(end.killed) == 1, end.killed
    assert waited < 5.0, f"the search returned {waited:.1f}s after its hard end"
    by_x = {r.config["x"]: r for r in grid}
    assert by_x[0].checkpoint is not None and by_x[0].metrics.get("done")
    assert by_x[1].metrics["objective"] == 1.0 and not by_x[1].metrics.get("done")
