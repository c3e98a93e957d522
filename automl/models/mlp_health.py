"""Training health rules of the MLP (in the spirit of SageMaker Debugger's built-in rules): after
every epoch ``HealthMonitor.check`` looks at the losses and gradients and names the rule that
fired (nan_loss, exploding_loss, vanishing_gradient, overfitting, no_progress), which stops the
trial with that reason on the leaderboard."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: nan_loss fires as soon as the training or validation loss is NaN or infinite
#: exploding_loss fires when an epoch's training loss exceeds this multiple of the loss of the
#: best constant prediction (a net that trains normally stays below ~2x after its first epoch)
EXPLODING_LOSS_RATIO = 10.0
#: vanishing_gradient fires when the mean |gradient| of the first layer's weights, averaged over an
#: epoch's batches, stays below this for VANISHING_GRADIENT_EPOCHS epochs in a row (SageMaker's
#: VanishingGradient default threshold): the bottom of the network has stopped learning
VANISHING_GRADIENT_THRESHOLD = 1e-7
VANISHING_GRADIENT_EPOCHS = 2
#: overfitting fires when, over the last OVERFITTING_EPOCHS epochs, the validation loss stayed above
#: its earlier best and rose (upward least-squares trend, ending OVERFITTING_MIN_RISE above that
#: best) while the training loss fell (downward trend). Trends, not epoch-by-epoch rises: per-epoch
#: noise broke strictly consecutive rises in 3 of 8 plainly overfitting runs measured
OVERFITTING_EPOCHS = 5
OVERFITTING_MIN_RISE = 0.10
#: no_progress fires when, after NO_PROGRESS_EPOCHS epochs and at least NO_PROGRESS_MIN_UPDATES
#: optimizer steps, the best validation loss is not NO_PROGRESS_MARGIN (relative) below the loss
#: of the best constant prediction: the network has learned nothing the class shares/mean do not know
NO_PROGRESS_EPOCHS = 5
NO_PROGRESS_MIN_UPDATES = 200
NO_PROGRESS_MARGIN = 0.01


@dataclass(frozen=True)
class EpochHealth:
    epoch: int
    train_loss: float
    val_loss: float
    first_layer_grad: float


@dataclass
class HealthMonitor:
    """Checks the rules after every epoch; ``check`` returns ``"<rule>: <detail>"`` or None."""

    constant_loss: float  # validation loss of the best constant prediction
    updates_per_epoch: int = 1
    history: list[EpochHealth] = field(default_factory=list)

    def check(self, record: EpochHealth) -> str | None:
        self.history.append(record)
        for rule in (nan_loss, exploding_loss, vanishing_gradient, overfitting, no_progress):
            detail = rule(self)
            if detail:
                return f"{rule.__name__}: {detail}"
        return None


def nan_loss(m: HealthMonitor) -> str | None:
    h = m.history[-1]
    for what, value in (("training", h.train_loss), ("validation", h.val_loss)):
        if not math.isfinite(value):
            return f"{what} loss became {value} at epoch {h.epoch}"
    return None


def exploding_loss(m: HealthMonitor) -> str | None:
    h = m.history[-1]
    if h.train_loss > EXPLODING_LOSS_RATIO * m.constant_loss:
        return (
            f"training loss {h.train_loss:.4g} at epoch {h.epoch} is more than {EXPLODING_LOSS_RATIO:g}x "
            f"the loss of a constant prediction ({m.constant_loss:.4g})"
        )
    return None


def vanishing_gradient(m: HealthMonitor) -> str | None:
    last = m.history[-VANISHING_GRADIENT_EPOCHS:]
    if len(last) == VANISHING_GRADIENT_EPOCHS and all(
        h.first_layer_grad < VANISHING_GRADIENT_THRESHOLD for h in last
    ):
        return (
            f"mean |gradient| of the first layer {last[-1].first_layer_grad:.3g} < "
            f"{VANISHING_GRADIENT_THRESHOLD:g} for {VANISHING_GRADIENT_EPOCHS} epochs "
            f"(epoch {last[-1].epoch})"
        )
    return None


def _slope(values: list[float]) -> float:
    return float(np.polyfit(np.arange(len(values)), values, 1)[0])


def overfitting(m: HealthMonitor) -> str | None:
    if len(m.history) <= OVERFITTING_EPOCHS:
        return None
    before, window = m.history[:-OVERFITTING_EPOCHS], m.history[-OVERFITTING_EPOCHS - 1 :]
    best = min(h.val_loss for h in before)
    val, train = [h.val_loss for h in window], [h.train_loss for h in window]
    if (
        min(val[1:]) > best
        and val[-1] > (1 + OVERFITTING_MIN_RISE) * best
        and _slope(val) > 0
        and _slope(train) < 0
    ):
        return (
            f"validation loss rose for {OVERFITTING_EPOCHS} epochs ({best:.4g} -> {val[-1]:.4g}) "
            f"while training loss fell ({train[0]:.4g} -> {train[-1]:.4g}), epoch {window[-1].epoch}"
        )
    return None


def no_progress(m: HealthMonitor) -> str | None:
    needed = max(NO_PROGRESS_EPOCHS, math.ceil(NO_PROGRESS_MIN_UPDATES / max(m.updates_per_epoch, 1)))
    if len(m.history) < needed:
        return None
    best = min(h.val_loss for h in m.history)
    if best > (1 - NO_PROGRESS_MARGIN) * m.constant_loss:
        return (
            f"best validation loss {best:.4g} after {len(m.history)} epochs is not "
            f"{NO_PROGRESS_MARGIN:.0%} below the loss of a constant prediction ({m.constant_loss:.4g})"
        )
    return None
