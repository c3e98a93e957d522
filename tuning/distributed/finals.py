"""The final fits of the streaming mode: the best config of each boosting family (LightGBM,
XGBoost) found by the search on the sample, trained again on every row of the streamed training
part through Ray Train. Each block is preprocessed by the sample-fitted recipe with the Predictor's
own code (:class:`automl.streaming.features.BatchEncoder`) into the layout of
:mod:`tuning.distributed.frames`, and the trainer's ``datasets=`` hands each worker only its shard.

A final becomes one more candidate of the search (a :class:`TrialRecord` with its saved models),
scored on the sample's validation rows like every trial, so the ensembler and the deployment
chooser weigh it against the sample-trained models. A final that would not fit in the time left
is not started: the best sample-trained model stays, and the notes say so.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl.runtime import responsive_cpus
from automl.streaming.features import BatchEncoder
from automl.streaming.source import map_blocks
from automl.target import family_params
from automl.training import CandidateResult, save_result
from automl.trials import SearchOutcome, TrialRecord
from tuning.distributed import DistributedFit, DistributedJob, fit
from tuning.distributed.frames import LABEL, WEIGHT, FeatureLayout, to_frame
from tuning.distributed.reserve import (
    FINAL_FAMILIES,
    FINAL_OVERHEAD_S,
    affordable_share,
    default_workers,
    expected_final_s,
    workers_for,
    worthwhile,
)

logger = logging.getLogger(__name__)

#: seconds a final keeps after its boosting stops, to end the Ray Train run, fetch the model and score
#: it: boosting stops at the finals' deadline less this
FINAL_WIND_DOWN_S = 15.0
#: a final is started again this many times after its workers failed (a worker or its node died).
#: The fit restarts it, not Ray Train (whose ``max_failures`` restarts a group of the same size):
#: each restart has as many workers as the nodes that answer a task then hold
#: (``runtime.responsive_cpus``, ``reserve.workers_for``). Two half-CPU workers restarted by Ray
#: Train on the one 1-CPU node left held all of its CPU, and the Ray Data tasks feeding them were
#: never scheduled: the fit hung
FINAL_MAX_FAILURES = 2
#: CPUs of a final's Ray Train worker, however many there are: a 1-CPU node that holds one keeps
#: half a CPU for the Ray Data tasks (``DATA_TASK_CPUS``) that read and preprocess its shard
FINAL_WORKER_CPUS = 0.5
#: a final's record beside its models (the resume of a killed streaming fit reuses the final)
FINAL_RECORD = "final.json"


class Frames:
    """map_batches: a raw block -> the frames layout (n*, c*, __label, __weight)."""

    def __init__(self, encoder: BatchEncoder, layout: FeatureLayout, weighted: bool) -> None:
        self.encoder, self.layout, self.weighted = encoder, layout, weighted

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        enc = self.encoder.encode(batch)
        if enc.X is None:
            X = self.layout.empty_matrix()
            return to_frame(X, np.zeros(0, enc.y.dtype), np.zeros(0, np.float32) if self.weighted else None)
        return to_frame(enc.X, enc.y, enc.w if self.weighted else None)


def frames(ds: Any, encoder: BatchEncoder, layout: FeatureLayout, weighted: bool) -> Any:
    return map_blocks(ds, Frames(encoder, layout, weighted))


def best_configs(outcome: SearchOutcome, metric: Any, families: dict[str, Any]) -> dict[str, TrialRecord]:
    """The best completed trial of each final family, the best family first (when the time left
    is for one final, it is the best one's)."""
    best: dict[str, TrialRecord] = {}
    for r in outcome.completed():
        if r.family in FINAL_FAMILIES and r.family in families and r.score is not None:
            if r.family not in best or metric.objective(r.score) > metric.objective(best[r.family].score):
                best[r.family] = r
    order = sorted(best.values(), key=lambda r: -metric.objective(r.score))
    return {r.family: r for r in order}


def train_finals(
    prep: Any,
    outcome: SearchOutcome,
    stream: Any,
    *,
    run_dir: Path,
    deadline: float | None,
    cluster: Any,
    resume: bool = False,
) -> list[TrialRecord]:
    """Train the finals that fit before ``deadline``; returns their records (appended to the
    search's by the caller). ``stream``: the :class:`automl.streaming.plan.StreamPlan`. With
    ``resume``, a final saved by the interrupted fit from the same trial is used as it is."""
    if not stream.config.finals:
        stream.notes.append("final fits off (StreamingConfig.finals=False): the sample-trained models stay")
        return []
    workers = stream.config.final_workers or default_workers(cluster)
    records = []
    for family, trial in best_configs(outcome, prep.metric, prep.families).items():
        saved = _saved_final(run_dir, trial, stream) if resume else None
        if saved is not None:
            records.append(saved)
            continue
        need = expected_final_s(trial.fit_time_s, stream, workers)
        left = None if deadline is None else deadline - time.time()
        share = 1.0 if left is None or need <= left else affordable_share(need, left)
        if not worthwhile(share, stream):
            note = (
                f"final {family}: not trained on the full data (~{need:.0f}s expected, {max(0, left):.0f}s "
                f"left); the best sample-trained model is kept"
            )
            logger.warning(note)
            stream.notes.append(note)
            continue
        if share < 1.0:
            note = (
                f"final {family}: trained on {share:.0%} of the training part (every row: ~{need:.0f}s "
                f"expected, {left:.0f}s left)"
            )
            logger.warning(note)
            stream.notes.append(note)
        run = FinalRun(
            trial,
            workers,
            run_dir,
            index=len(outcome.trials) + len(records) + 1,
            share=share,
            stop=None if deadline is None else deadline - FINAL_WIND_DOWN_S,
            expected_s=need * share + FINAL_OVERHEAD_S * (1 - share),
        )
        try:
            records.append(_final(prep, stream, run))
        except Exception as exc:  # noqa: BLE001 - a failed final ends itself, not the fit
            note = (
                f"final {family}: failed, restarts included ({_first_line(exc)}); the best "
                f"sample-trained model is kept"
            )
            logger.warning(note)
            stream.notes.append(note)
    return records


def _saved_final(run_dir: Path, trial: TrialRecord, stream: Any) -> TrialRecord | None:
    """The final an interrupted fit saved from ``trial`` (its models and record), if any."""
    path = run_dir / "finals" / trial.family / FINAL_RECORD
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if saved["info"]["from_trial"] != trial.trial_id:  # the resumed search chose another config
        return None
    logger.info("final %s: the interrupted fit's final of %s is reused", trial.family, trial.trial_id)
    stream.finals[trial.family] = {**saved["info"], "resumed": True}
    return TrialRecord(**saved["record"])


@dataclass(frozen=True)
class FinalRun:
    """One final to train: the trial whose config it takes, and where, on what and until when."""

    trial: TrialRecord
    workers: int
    run_dir: Path
    index: int = 0  # its place among the search's trials (the leaderboard's order)
    share: float = 1.0  # of the training part's rows
    stop: float | None = None  # time.time() at which boosting stops (None: it ends by itself)
    expected_s: float | None = None  # its expected seconds (reserve.expected_final_s on its share)


def final_job(prep: Any, stream: Any, run: FinalRun) -> DistributedJob:
    """The Ray Train job of one final: the streamed parts in the frames layout (``share`` of the
    training rows, by a seeded row hash), preprocessed block by block by the sample-fitted recipe
    (the config's target transform applied)."""
    trial, workers, share = run.trial, run.workers, run.share
    data, family = prep.data, prep.families[trial.family]
    config = dict(trial.params)
    encoder = BatchEncoder(
        prep.schema,
        prep.preprocessors[family.recipe],
        prep.profile.target,
        classes=prep.classes,
        weight_column=prep.profile.weight_column,
        transform=data.target_transform(config) if data.target_plan is not None else None,
    )
    layout = FeatureLayout.of(data.features[family.recipe])
    weighted = prep.profile.weight_column is not None
    return DistributedJob(
        config=family_params(config),
        task=replace(data.task, n_rows=int(stream.n_train_estimate * share)),
        metric=data.metric.name,
        datasets={
            "train": frames(stream.train_part(share), encoder, layout, weighted),
            "validation": frames(stream.stopping_rows(), encoder, layout, False),
        },
        layout=layout,
        weighted=weighted,
        n_train_rows=int(stream.n_train_estimate * share),
        num_workers=workers,
        use_gpu=False,
        storage_path=str((run.run_dir / "train").resolve()),
        name=f"final-{trial.family}",
        report_to_tune=False,
        cpus_per_worker=FINAL_WORKER_CPUS,
        placement="SPREAD",
        deadline=run.stop,
        max_failures=0,  # restarted by fit_restarting, on the nodes alive then
    )


def fit_restarting(prep: Any, stream: Any, run: FinalRun) -> tuple[DistributedFit, FinalRun, int]:
    """Train one final; when its workers fail (``ray.train.TrainingFailedError``: a worker or its
    node died), start it again, ``FINAL_MAX_FAILURES`` times at most and not after its boosting
    deadline, with the workers the nodes alive now can hold. Returns the fit, the run that trained
    it (its worker count) and the number of restarts."""
    from ray.train import TrainingFailedError

    family = run.trial.family
    for restarts in range(FINAL_MAX_FAILURES + 1):
        try:
            return fit(family, final_job(prep, stream, run)), run, restarts
        except TrainingFailedError as exc:
            if restarts == FINAL_MAX_FAILURES or (run.stop is not None and time.time() >= run.stop):
                raise
            workers = min(run.workers, workers_for(responsive_cpus()))
            note = (
                f"final {family}: its workers failed ({_first_line(exc)}); started again with "
                f"{workers} worker(s) on the nodes alive"
            )
            logger.warning(note)
            stream.notes.append(note)
            run = replace(run, workers=workers)
    raise AssertionError("unreachable")


def _first_line(exc: BaseException) -> str:
    """The error's type and first telling line (Ray Train's "... due to worker errors:" heads the
    workers' own)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    first = next((ln for ln in lines if not ln.endswith(":")), lines[0] if lines else "")
    return f"{type(exc).__name__}: {first[:200]}"


def _final(prep: Any, stream: Any, run: FinalRun) -> TrialRecord:
    """One final fit: train on the streamed training part, score on the sample's validation rows."""
    t0 = time.time()
    trial, share = run.trial, run.share
    data, recipe, config = prep.data, prep.families[trial.family].recipe, dict(trial.params)
    logger.info(
        "final %s: %s's config on the full data, %d Ray Train workers",
        trial.family,
        trial.trial_id,
        run.workers,
    )
    done, run, restarts = fit_restarting(prep, stream, run)
    workers = run.workers
    _, va = data.folds[0]
    pred = done.model.predict(data.fold_matrix(recipe, 0, va))
    step = data.output_step(config)
    if step is not None:
        pred = step.apply(pred)
    k = data.n_outputs
    oof = np.full((len(data.y), k) if k else (len(data.y),), np.nan)
    oof[va] = pred
    score = float(data.metric.score(data.y[va], pred))
    wall = time.time() - t0
    rows = "the full training part" if share >= 1.0 else f"{share:.0%} of the training part"
    why = f"final: {trial.trial_id}'s config on {rows}, {workers} Ray Train workers"
    if restarts:
        why += f" (started {restarts + 1} times: its workers failed)"
    if done.stopped_at_deadline:
        why += f"; boosting stopped at the deadline after {done.best_iteration} rounds (best so far)"
        note = f"final {trial.family}: boosting stopped at the deadline ({done.best_iteration} rounds kept)"
        logger.warning(note)
        stream.notes.append(note)
    result = CandidateResult(
        trial.family, config, [score], done.best_iteration, oof, [done.model], done.seconds, wall, why
    )
    directory = run.run_dir / "finals" / trial.family
    save_result(result, directory)
    stream.finals[trial.family] = {
        "from_trial": trial.trial_id,
        "sample_score": trial.score,
        "score": score,
        "iterations": done.best_iteration,
        "workers": workers,
        "restarts": restarts,
        "share_of_training_rows": round(share, 4),
        "seconds": round(wall, 1),
        "expected_s": None if run.expected_s is None else round(run.expected_s, 1),
        "stopped_at_deadline": done.stopped_at_deadline,
    }
    logger.info(
        "final %s: validation %s %.5g (sample-trained %.5g), %.0fs",
        trial.family,
        data.metric.name,
        score,
        trial.score,
        wall,
    )
    record = TrialRecord(
        trial_id=f"final_{trial.family}",
        family=trial.family,
        params=config,
        status="completed",
        score=score,
        score_std=0.0,
        iteration=done.best_iteration,
        fit_time_s=done.seconds,
        library_time_s=done.seconds,
        trial_wall_s=wall,
        predict_time_s=trial.predict_time_s,
        stop_reason=why,
        checkpoint=str(directory),
        index=run.index,
    )
    info = {**stream.finals[trial.family], "resumed": False}
    (directory / FINAL_RECORD).write_text(json.dumps({"record": asdict(record), "info": info}, default=str))
    return record


__all__ = ["FINAL_FAMILIES", "LABEL", "WEIGHT", "Frames", "best_configs", "frames", "train_finals"]
