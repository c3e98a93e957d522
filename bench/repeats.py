"""Repeated splits: every system's score as mean ± sd over the split seeds, a win/tie/loss of ours
against each peer and against the best peer, and how far each fit ran over its budget.

The tie rule (also written into the summary, :data:`TIE_RULE`): on the seeds *both* systems have
a result for (the same test rows), with ``m`` the mean and ``s`` the sample standard deviation
(n - 1) over those seeds, the two are tied when ``|m_ours - m_peer| <= max(s_ours, s_peer)``;
otherwise the better mean wins (higher for roc_auc/accuracy/r2, lower for rmse/log_loss). With a
single common seed there is no spread, so any difference decides. The best peer of a (table,
budget) is the peer with the better mean over the seeds it shares with us.

A second, paired view (:data:`PAIRED_RULE`) is reported beside it and does not change the headline:
every system is scored on the same test rows of a seed, so a split that is hard for one is hard for
all, and the unpaired rule above counts that shared spread against any difference (credit_g's
scores spread 0.066 ROC AUC over three splits for every system). The paired view takes each common
seed's difference and compares their mean with their own sd.

Everything here is pure: Entries (bench.table) in, dataclasses and markdown out.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from bench.common import SYSTEM
from bench.table import Entry

TIE_RULE = (
    "Tie rule: on the seeds both systems have a result for, with m the mean and s the sample "
    "standard deviation over those seeds, |m_ours - m_peer| <= max(s_ours, s_peer) is a tie; "
    "otherwise the better mean wins. With one common seed there is no spread and any difference "
    "decides. The best peer is the peer with the better mean over the seeds it shares with us. "
    "'k/n seeds' counts the common seeds on which our score is strictly better."
)

PAIRED_RULE = (
    "Paired view (beside the headline, not in it): d is our score minus the peer's on each common "
    "seed (positive: ours better); |mean d| <= sd d is a tie, otherwise the sign of mean d decides."
)

Scores = dict[int, float]  # split seed -> test score
Key = tuple[str, float]  # (table, budget)


@dataclass(frozen=True)
class Stat:
    n: int
    mean: float
    sd: float  # sample sd (n - 1); 0.0 for a single value


def stat(values: Iterable[float]) -> Stat | None:
    vals = [float(v) for v in values]
    if not vals:
        return None
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return Stat(len(vals), statistics.fmean(vals), sd)


@dataclass(frozen=True)
class Verdict:
    """Ours against one peer on one (table, budget); ``outcome`` None: no common seed."""

    peer: str
    outcome: str | None  # "win" | "tie" | "loss"
    seeds: tuple[int, ...]  # the common seeds compared
    diff: float | None = None  # mean_ours - mean_peer, signed so that positive means ours is better
    spread: float | None = None  # max(sd_ours, sd_peer) over the common seeds
    seeds_won: int = 0
    paired: str | None = None  # the paired view's outcome (PAIRED_RULE)
    paired_sd: float | None = None  # sd of the per-seed differences


def compare(ours: Scores, peer: Scores, greater_is_better: bool, name: str = "peer") -> Verdict:
    """The tie rule of this module on the seeds both have."""
    common = tuple(sorted(set(ours) & set(peer)))
    if not common:
        return Verdict(name, None, ())
    sign = 1.0 if greater_is_better else -1.0
    d = [sign * (ours[s] - peer[s]) for s in common]  # per seed, positive: ours better
    a, b, paired_d = stat(ours[s] for s in common), stat(peer[s] for s in common), stat(d)
    assert a is not None and b is not None and paired_d is not None
    diff, spread = sign * (a.mean - b.mean), max(a.sd, b.sd)  # diff is also paired_d's mean
    won = sum(x > 0 for x in d)
    return Verdict(
        name, _outcome(diff, spread), common, diff, spread, won, _outcome(diff, paired_d.sd), paired_d.sd
    )


def _outcome(diff: float, spread: float) -> str:
    return "tie" if abs(diff) <= spread else ("win" if diff > 0 else "loss")


def best_peer(ours: Scores, peers: dict[str, Scores], greater_is_better: bool) -> str | None:
    """The peer with the better mean over the seeds it shares with ours (None: no peer shares one)."""
    means = {}
    for name, scores in peers.items():
        common = set(ours) & set(scores)
        if common:
            means[name] = statistics.fmean(scores[s] for s in common)
    if not means:
        return None
    pick = max if greater_is_better else min
    return pick(sorted(means), key=lambda n: means[n])


@dataclass
class Group:
    """Every system's results on one (table, budget)."""

    table: str
    budget: float
    metric: str
    greater_is_better: bool
    scores: dict[str, Scores]  # system -> seed -> score (ok runs only)
    fit_s: dict[str, Scores]  # system -> seed -> fit wall seconds (ok runs only)
    failed: dict[str, list[int]]  # system -> seeds whose run failed

    def verdicts(self) -> dict[str, Verdict]:
        """Ours against each peer, and under ``"best peer"`` against the best one."""
        ours = self.scores.get(SYSTEM, {})
        peers = {s: v for s, v in self.scores.items() if s != SYSTEM}
        out = {p: compare(ours, v, self.greater_is_better, p) for p, v in sorted(peers.items())}
        best = best_peer(ours, peers, self.greater_is_better)
        if best is not None:
            v = out[best]
            out["best peer"] = dataclasses.replace(v, peer=best)
        return out

    def overshoot(self, system: str) -> tuple[float, float] | None:
        """(mean, max) over seeds of fit wall seconds minus the budget."""
        over = [v - self.budget for v in self.fit_s.get(system, {}).values()]
        return (statistics.fmean(over), max(over)) if over else None


def group(ours: list[Entry], peers: list[Entry]) -> list[Group]:
    """One Group per (table, budget) we ran, holding ours and the peers' entries there."""
    keys = sorted({(e.table, e.budget) for e in ours})
    groups = {}
    for table, budget in keys:
        first = next(e for e in ours if (e.table, e.budget) == (table, budget))
        groups[(table, budget)] = Group(table, budget, first.metric, first.greater_is_better, {}, {}, {})
    for e in [*ours, *peers]:
        g = groups.get((e.table, e.budget))
        if g is None:
            continue
        if e.status == "ok" and e.score is not None and math.isfinite(e.score):
            g.scores.setdefault(e.system, {})[e.seed] = float(e.score)
            if e.fit_s is not None:
                g.fit_s.setdefault(e.system, {})[e.seed] = float(e.fit_s)
        else:
            g.failed.setdefault(e.system, []).append(e.seed)
    return list(groups.values())


def systems_of(groups: list[Group]) -> list[str]:
    """Ours first, then every peer seen, sorted."""
    peers = sorted({s for g in groups for s in [*g.scores, *g.fit_s, *g.failed]} - {SYSTEM})
    return [SYSTEM, *peers]


def fmt(v: float | None, like: float | None = None, sign: bool = False) -> str:
    """A score with precision by magnitude (of ``like`` when given: an sd printed like its mean)."""
    if v is None or not math.isfinite(v):
        return "-"
    ref = abs(like if like is not None else v)
    digits = 0 if ref >= 1000 else 1 if ref >= 100 else 2 if ref >= 10 else 4
    return format(v, f"{'+' if sign else ''},.{digits}f")


def _cell(scores: Scores | None, failed: list[int], like: float) -> str:
    st = stat((scores or {}).values())
    out = "-" if st is None else f"{fmt(st.mean, like)} ± {fmt(st.sd, like)} ({st.n})"
    return out + (f", failed s{','.join(map(str, sorted(failed)))}" if failed else "")


def _verdict_cell(v: Verdict | None, like: float, with_name: bool = False) -> str:
    if v is None or v.outcome is None:
        return "-"
    name = f" {v.peer}" if with_name else ""
    return f"**{v.outcome}**{name} {fmt(v.diff, like, sign=True)} ({v.seeds_won}/{len(v.seeds)} seeds)"


def _paired_cell(v: Verdict | None, like: float) -> str:
    if v is None or v.paired is None:
        return "-"
    return f"{v.paired} {fmt(v.diff, like, sign=True)} ± {fmt(v.paired_sd, like)}"


def headline(
    groups: list[Group], budget: float, against: str = "best peer", paired: bool = False
) -> tuple[int, int, int, int]:
    """(wins, ties, losses, tables compared) against one peer or the best peer at one budget,
    under the tie rule or (``paired``) the paired view."""
    outs = [g.verdicts().get(against) for g in groups if g.budget == budget]
    outs = [v.paired if paired else v.outcome for v in outs if v is not None and v.outcome is not None]
    return outs.count("win"), outs.count("tie"), outs.count("loss"), len(outs)


def seeds_markdown(groups: list[Group]) -> str:
    """The mean ± sd table with the verdicts, and the headline per budget."""
    systems = systems_of(groups)
    peers = systems[1:]
    head = ["table", "budget", "metric", *systems, *(f"vs {p}" for p in peers)]
    head += ["vs best peer", "paired vs best peer"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in sorted(groups, key=lambda g: (g.budget, g.table)):
        v = g.verdicts()
        like = max(
            (abs(x) for sc in g.scores.values() for x in sc.values()), default=0.0
        )  # one precision a row
        cells = [_cell(g.scores.get(s), g.failed.get(s, []), like) for s in systems]
        cells += [_verdict_cell(v.get(p), like) for p in peers]
        cells.append(_verdict_cell(v.get("best peer"), like, with_name=True))
        cells.append(_paired_cell(v.get("best peer"), like))
        lines.append(f"| {g.table} | {g.budget:g}s | {g.metric} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Cells: mean ± sd (seeds with a result). Verdict: outcome, difference of means (positive: ours "
        "better, in metric units) and seeds won. " + TIE_RULE,
        "",
        PAIRED_RULE + " Cell: outcome, mean d ± sd d.",
    ]
    for budget in sorted({g.budget for g in groups}):
        wins, ties, losses, n = headline(groups, budget)
        if not n:
            continue
        each = "; ".join("against {}: {}/{}/{}".format(p, *headline(groups, budget, p)[:3]) for p in peers)
        tables = f"{n} table{'s' * (n != 1)}"
        lines += [
            "",
            f"**At {budget:g} s: wins {wins}, ties {ties}, losses {losses} on {tables}** against the best "
            f"peer (wins/ties/losses {each}).",
            "Paired view against the best peer: wins {}, ties {}, losses {}.".format(
                *headline(groups, budget, paired=True)[:3]
            ),
        ]
    return "\n".join(lines)


def overshoot_markdown(groups: list[Group]) -> str:
    """Fit wall time minus the budget per system: mean and max over the seeds."""
    systems = systems_of(groups)
    head = ["table", "budget", *(f"{s} mean (max) s" for s in systems)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    worst: dict[str, tuple[float, str]] = {}
    for g in sorted(groups, key=lambda g: (g.budget, g.table)):
        cells = []
        for s in systems:
            o = g.overshoot(s)
            cells.append("-" if o is None else f"{o[0]:+.1f} ({o[1]:+.1f})")
            if o is not None and (s not in worst or o[1] > worst[s][0]):
                worst[s] = (o[1], f"{g.table} {g.budget:g}s")
        lines.append(f"| {g.table} | {g.budget:g}s | " + " | ".join(cells) + " |")
    note = (
        "Fit wall time minus the budget (positive: over time), over the seeds with a result; ours "
        "is the wall time of the whole `automl fit` process (imports, Ray start-up and shutdown; "
        "less its test scoring, which the limit does not count), the peers' their `fit.wall_s`."
    )
    if worst:
        note += " Worst: " + "; ".join(f"{s} {w:+.1f} s ({where})" for s, (w, where) in worst.items()) + "."
    return "\n".join([*lines, "", note])


#: a run that started with more than this many runnable processes per CPU was timed on a busy machine
BUSY_LOAD_PER_CPU = 1.5


def busy_runs(entries: list[Entry], limit: float = BUSY_LOAD_PER_CPU) -> list[str]:
    """Runs that started on a busy machine: budget-driven systems then get fewer trials or rounds."""
    busy = [e for e in entries if e.load_per_cpu is not None and e.load_per_cpu > limit]
    return [
        f"{e.system} {e.table} {e.budget:g}s seed {e.seed} ({e.load_per_cpu:.1f})"
        for e in sorted(busy, key=lambda e: (e.table, e.budget, e.seed, e.system))
    ]


def split_mismatches(entries: list[Entry]) -> list[str]:
    """(table, seed) pairs whose systems were scored on different test rows (test_index_sha256)."""
    shas: dict[tuple[str, int], set[str]] = {}
    for e in entries:
        if e.split_sha:
            shas.setdefault((e.table, e.seed), set()).add(e.split_sha)
    return [f"{t} seed {s}" for (t, s), v in sorted(shas.items()) if len(v) > 1]
