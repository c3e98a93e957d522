"""A trial checkpointed mid-training and resumed continues from the saved step and ends with the
quality of an uninterrupted one (not bit-identical: row/feature subsampling restarts its random
stream after a restore)."""

import shutil

import numpy as np
import pytest
from helpers import trial_data

from automl.models import all_families
from automl.training import is_state_checkpoint, train_candidate

FAMILIES = [n for n in all_families() if n != "mlp"] + ["mlp"]


@pytest.fixture(scope="module")
def data(binary_df):
    return trial_data(binary_df, "label")[0]


@pytest.mark.parametrize("name", FAMILIES)
def test_resume_from_mid_trial_checkpoint_matches_uninterrupted(data, name, tmp_path):
    family = all_families()[name]
    config = family.portfolio(data.task)[0]
    full = train_candidate(family, config, data)
    saved = {}

    def on_step(metrics, state_dir=None):
        if state_dir and "dir" not in saved:
            saved["dir"] = tmp_path / "state"
            shutil.copytree(state_dir, saved["dir"])
            saved["step"] = metrics["step"]

    first = train_candidate(family, config, data, on_step=on_step, checkpoint=lambda step, elapsed: step == 2)
    learner = family.learner(
        config, data.task, data.features[family.recipe], data.y, None, data.features[family.recipe], data.y
    )
    if not learner.supports_state:
        pytest.skip(f"{name} learners restart from scratch instead of checkpointing")
    if "dir" not in saved:
        pytest.skip(f"{name} finished in one step; nothing to resume")
    assert is_state_checkpoint(saved["dir"])
    resumed = train_candidate(family, config, data, resume_from=saved["dir"])
    # the first two steps come from the checkpoint, identical to the interrupted run's
    assert [h.score for h in resumed.history[:2]] == [h.score for h in first.history[:2]]
    assert resumed.history[2].step == 3 and resumed.history[2].iteration > resumed.history[1].iteration
    assert resumed.score == pytest.approx(full.score, abs=0.01)
    assert not np.isnan(resumed.oof).any()


@pytest.mark.parametrize("fails", [False, True])
def test_trial_removes_its_copy_of_the_restored_checkpoint(monkeypatch, tmp_path, fails):
    """Each restored trial copies its checkpoint to a temp folder; the copy goes when the trial
    ends, also when it raises (71 copies had piled up in /tmp before)."""
    from tuning import trainable

    copy = tmp_path / "automl-restore-x"
    copy.mkdir()
    (copy / "progress.json").write_text("{}")
    seen = []

    def run(config, data, settings, restored, t0):
        seen.append(restored.exists())
        if fails:
            raise RuntimeError("worker died")

    monkeypatch.setattr(trainable, "_restored_checkpoint", lambda: copy)
    monkeypatch.setattr(trainable, "_run", run)
    if fails:
        with pytest.raises(RuntimeError):
            trainable.run_trial({}, None, trainable.TrialSettings(deadline=None))
    else:
        trainable.run_trial({}, None, trainable.TrialSettings(deadline=None))
    assert seen == [True] and not copy.exists()
