"""Time a search keeps for the stack layer (``EnsembleConfig(stack_levels=1)``), when the layer fits.

The stack layer's nested fits cost about 1.56x its members' training time with 5-fold validation
(:func:`automl.stacking.stack_cost_s`). A fixed share of the time limit kept for it was lost
whenever the layer needed more: at 300 s, 15 % (45 s) was kept, the layer would have taken
96-158 s and was skipped, and the fits of adult, california_housing and diamonds ended 44-60 s
before their limit. Here the search keeps that time only while the layer is expected to fit in it:
it ends once the time left is what the layer (over the best candidates so far) and the refits after
it are expected to take; when the layer needs more than ``cap`` the search runs on and the layer is
skipped for time, as before, but the search had the time.
"""

from __future__ import annotations

from dataclasses import dataclass

from automl.refit import RefitReserve
from automl.stacking import stack_cost_s

#: the layer's members are estimated as the best candidate of each of this many best families
#: (a weighted ensemble's members, which the layer stacks, usually come from two to four)
STACK_FAMILIES = 3


@dataclass(kw_only=True)
class StackReserve(RefitReserve):
    """A :class:`RefitReserve` that also keeps the stack layer's expected time, up to ``cap``
    (built with :meth:`RefitReserve.over`)."""

    folds: int
    cap: float  # the most time the search gives up for the layer
    refit: bool = True  # whether the refits' time is kept too

    def stack_s(self) -> float | None:
        """Expected seconds of the layer over the best candidates so far (None: none yet)."""
        if not self.best:
            return None
        top = sorted(self.best.values(), reverse=True)[:STACK_FAMILIES]
        return stack_cost_s([fit_s for _, fit_s in top], self.folds)

    def parts(self) -> tuple[float, float] | None:
        """(the layer's kept seconds: 0 when it needs more than ``cap``, the refits' seconds)."""
        stack = self.stack_s()
        if stack is None:
            return None
        refit = (super().need_s() or 0.0) if self.refit else 0.0
        return (stack if stack <= self.cap else 0.0), refit

    def need_s(self) -> float | None:
        parts = self.parts()
        return None if parts is None else sum(parts)

    def because(self, need: float) -> str:
        stack, refit = self.parts() or (0.0, 0.0)
        if not stack:
            return super().because(need)
        kept = f"time kept for the stack layer (~{stack:.1f}s expected)"
        return kept + (f" and refitting the best candidates on every row (~{refit:.1f}s)" if refit else "")
