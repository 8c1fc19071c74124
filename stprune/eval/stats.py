"""Paired statistics for accuracy on the same clips: is a difference in top-1 real?

Every setting of a sweep (``stprune eval``, ``stprune demo``) is evaluated on the same clips, so
two settings are compared clip by clip (a *paired* comparison). The unit is whatever one row of
correctness stands for; in ``stprune eval`` it is the **video**, after its views' softmax scores
are averaged (views of one video are not independent samples).

Three pure functions, numpy and the standard library only, no state (every random draw comes
from ``seed``):

- :func:`top1_ci`: top-1 with its 95% **Wilson score interval** for a binomial proportion. With
  ``k`` of ``n`` clips right, ``p = k / n`` and ``z = 1.959964`` (the normal 97.5% quantile)::

      centre = (p + z^2 / (2n)) / (1 + z^2 / n)
      half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))
      interval = [centre - half, centre + half]

  It stays inside [0, 1] and is not degenerate at 0% or 100%, unlike the normal approximation.
- :func:`compare`: settings A and B on the same ``n`` clips; ``b`` clips A gets right and B gets
  wrong, ``c`` the other way round. Then

  * ``delta = 100 (b - c) / n``: top-1 of A minus top-1 of B, in percentage points;
  * its 95% **paired bootstrap** interval: ``resamples`` (default 10,000) resamples of the ``n``
    clips with replacement, each giving ``100 (b* - c*) / n``; the interval is their 2.5th and
    97.5th percentiles (numpy's linear interpolation). The statistic depends only on how many
    resampled clips are of each kind (A only right, B only right, the rest), so a resample is
    drawn as those three counts, ``Multinomial(n; b/n, c/n, 1 - (b+c)/n)``: the same
    distribution as drawing ``n`` clip indices, at a cost that does not grow with ``n``;
  * the **exact two-sided McNemar p-value**, the binomial test of the discordant clips
    (under "no difference" each of the ``m = b + c`` is A's or B's with probability 1/2)::

        p = min(1, 2 * sum_{k <= min(b, c)} C(m, k) / 2^m)      (p = 1 when m = 0)

    summed in log space (``lgamma``, log-sum-exp), so any ``m`` is exact to about 1e-12.
- :func:`significant`: a difference counts only when its interval excludes 0 **and** McNemar's
  p < 0.05. With few discordant clips the percentile bootstrap is too narrow (b = 0, c = 5 on
  500 clips: the interval excludes 0, the exact p is 0.0625), so both must agree. Anything else
  is printed "n.s." (not significant), never as a win or a loss.

:func:`sweep_statistics` applies them to a sweep: every setting's interval, and its difference to
the unpruned model and to STA at the nearest FLOPs ratio, on the clips both evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

__all__ = [
    "Z95",
    "RESAMPLES",
    "SEED",
    "ALPHA",
    "PairedComparison",
    "SettingCorrectness",
    "as_correct",
    "wilson_interval",
    "top1_ci",
    "mcnemar_p",
    "discordant",
    "paired_bootstrap_ci",
    "compare",
    "significant",
    "format_p",
    "format_delta",
    "format_top1_ci",
    "statistics_cells",
    "STATISTICS_HEADERS",
    "statistics_notes",
    "nearest_sta",
    "sweep_statistics",
    "STAT_FIELDS",
]

#: the two-sided 95% normal quantile, Phi^-1(0.975) = 1.959963984540054
Z95: float = NormalDist().inv_cdf(0.975)
#: bootstrap resamples of a paired comparison
RESAMPLES = 10_000
#: the seed of every bootstrap draw (the same data give the same interval, run after run)
SEED = 0
#: the level a difference must reach (interval excluding 0 and McNemar p below it)
ALPHA = 0.05
#: the fields :func:`sweep_statistics` gives each setting (``sweep.json`` rows, demo rows)
STAT_FIELDS: tuple[str, ...] = (
    "top1_ci95",
    "delta_top1_vs_unpruned",
    "delta_ci95",
    "mcnemar_p",
    "delta_top1_vs_sta",
    "delta_ci95_vs_sta",
    "mcnemar_p_vs_sta",
    "sta_setting",
)


def as_correct(values: Any, labels: Any = None) -> np.ndarray:
    """Per-clip correctness as a bool vector ``(n,)``.

    Args:
        values: without ``labels``, ``(n,)`` correctness (bool, or 0 / 1); with ``labels``, ``(n,)``
            predicted class ids or ``(n, C)`` scores (logits, probabilities: the arg-max is the
            prediction). A list, numpy array or torch tensor.
        labels: ``(n,)`` true class ids, or None.

    Raises:
        ValueError: for another shape, lengths that differ, or correctness other than 0 / 1.
    """
    a = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values)
    if labels is None:
        if a.ndim != 1:
            raise ValueError(f"correctness must be a vector (n,), got shape {a.shape}")
        if a.dtype != bool:
            if a.size and not np.isin(a, (0, 1)).all():
                raise ValueError("correctness must be bool or 0 / 1; pass labels= with predictions")
            a = a.astype(bool)
        return a
    y = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be a vector (n,), got shape {y.shape}")
    if a.ndim == 2:
        a = a.argmax(axis=-1)
    if a.ndim != 1 or a.shape[0] != y.shape[0]:
        raise ValueError(f"predictions of shape {a.shape} do not match {y.shape[0]} labels")
    return a == y


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``k / n`` (fractions in [0, 1]); see the module
    docstring for the formula. ``n`` >= 1, 0 <= ``k`` <= ``n``."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1; got k={k}, n={n}")
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def top1_ci(correct: Any, labels: Any = None) -> tuple[float, float, float]:
    """Top-1 and its 95% Wilson interval, all in percent: ``(top1, lo, hi)``.

    ``correct``: ``(n,)`` per-clip correctness, or predictions / scores with ``labels``
    (:func:`as_correct`); n >= 1.
    """
    c = as_correct(correct, labels)
    if c.size == 0:
        raise ValueError("top1_ci needs at least one clip")
    k, n = int(c.sum()), int(c.size)
    lo, hi = wilson_interval(k, n)
    return 100.0 * k / n, 100.0 * lo, 100.0 * hi


def mcnemar_p(b: int, c: int) -> float:
    """The exact two-sided McNemar p-value of ``b`` and ``c`` discordant clips:
    ``min(1, 2 * sum_{k <= min(b, c)} C(b+c, k) / 2^(b+c))``, 1 when ``b + c == 0``.

    Computed in log space (each term ``lgamma(m+1) - lgamma(k+1) - lgamma(m-k+1) - m log 2``,
    then log-sum-exp), so it neither overflows nor loses the tail for large ``m``.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0; got b={b}, c={c}")
    m, k = b + c, min(b, c)
    if m == 0 or 2 * k >= m - 1:  # b == c, or |b - c| == 1: the tail holds half the mass or more
        return 1.0
    lg_m = math.lgamma(m + 1) - m * math.log(2.0)
    logs = np.array([lg_m - math.lgamma(j + 1) - math.lgamma(m - j + 1) for j in range(k + 1)])
    top = float(logs.max())
    log_tail = top + math.log(float(np.exp(logs - top).sum()))
    return min(1.0, 2.0 * math.exp(log_tail))


def discordant(correct_a: Any, correct_b: Any) -> tuple[int, int, int]:
    """``(b, c, n)`` of two correctness vectors of the same ``n`` clips: ``b`` clips only A gets
    right, ``c`` clips only B gets right."""
    a, bb = as_correct(correct_a), as_correct(correct_b)
    if a.shape != bb.shape:
        raise ValueError(f"the two settings must cover the same clips; got {a.shape[0]} and {bb.shape[0]}")
    return int((a & ~bb).sum()), int((~a & bb).sum()), int(a.size)


def paired_bootstrap_ci(
    b: int, c: int, n: int, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float]:
    """The 95% paired bootstrap percentile interval of ``100 (b - c) / n`` (percentage points).

    Each of ``resamples`` resamples draws ``n`` clips with replacement, as the counts of the three
    kinds of clip (``Multinomial(n; b/n, c/n, rest)``, vectorised: ``(resamples, 3)`` at once);
    the interval is the 2.5th and 97.5th percentiles of ``100 (b* - c*) / n``. Seeded: the same
    arguments give the same interval.
    """
    if n < 1 or b < 0 or c < 0 or b + c > n:
        raise ValueError(f"need b, c >= 0, b + c <= n, n >= 1; got b={b}, c={c}, n={n}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1; got {resamples}")
    if b == c == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, [b / n, c / n, max(0.0, 1.0 - (b + c) / n)], size=resamples)
    deltas = 100.0 * (counts[:, 0] - counts[:, 1]) / n
    lo, hi = np.percentile(deltas, [2.5, 97.5])
    return float(lo), float(hi)


def significant(ci95: Sequence[float] | None, p: float | None, alpha: float = ALPHA) -> bool:
    """Whether a difference is significant at ``alpha``: its interval excludes 0 and McNemar's
    ``p < alpha``. False when either is missing."""
    if ci95 is None or p is None:
        return False
    lo, hi = ci95
    return not (lo <= 0.0 <= hi) and p < alpha


@dataclass(frozen=True)
class PairedComparison:
    """Setting A against setting B on the same ``n`` clips.

    Attributes:
        delta: top-1 of A minus top-1 of B, percentage points: ``100 (b - c) / n``.
        ci95: its 95% paired bootstrap interval ``(lo, hi)``, percentage points.
        mcnemar_p: the exact two-sided McNemar p-value.
        b: clips A gets right and B wrong.
        c: clips A gets wrong and B right.
        n: clips compared.
        resamples: bootstrap resamples drawn.
        seed: the bootstrap's seed.
    """

    delta: float
    ci95: tuple[float, float]
    mcnemar_p: float
    b: int
    c: int
    n: int
    resamples: int = RESAMPLES
    seed: int = SEED

    @property
    def significant(self) -> bool:
        """Interval excludes 0 and p < 0.05 (:func:`significant`)."""
        return significant(self.ci95, self.mcnemar_p)

    def __str__(self) -> str:
        """``+1.20 [+0.40, +2.00] p=0.0042`` or ``-0.40 [-1.00, +0.00] p=0.5 n.s.``"""
        counts = f"{self.n} clips, b={self.b}, c={self.c}"
        return f"{format_delta(self.delta, self.ci95, self.mcnemar_p)} ({counts})"


def compare(
    correct_a: Any,
    correct_b: Any,
    labels: Any = None,
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> PairedComparison:
    """Setting A against setting B on the same clips: the difference in top-1, its 95% paired
    bootstrap interval and the exact McNemar p-value (see the module docstring).

    Args:
        correct_a: A's ``(n,)`` per-clip correctness; or, with ``labels``, its predictions ``(n,)``
            or scores ``(n, C)``. Clip ``i`` of A must be clip ``i`` of B.
        correct_b: the same for B.
        labels: ``(n,)`` true class ids when A and B are predictions.
        resamples: bootstrap resamples (default 10,000).
        seed: the bootstrap's seed (default 0).

    Example::

        >>> from stprune.eval import compare
        >>> r = compare([1, 1, 1, 0, 1, 1], [1, 0, 1, 0, 1, 1])
        >>> r.delta, r.b, r.c, r.mcnemar_p, r.significant
        (16.666666666666668, 1, 0, 1.0, False)
    """
    a = as_correct(correct_a, labels)
    bb = as_correct(correct_b, labels)
    b, c, n = discordant(a, bb)
    if n == 0:
        raise ValueError("compare needs at least one clip")
    ci = paired_bootstrap_ci(b, c, n, resamples, seed)
    return PairedComparison(100.0 * (b - c) / n, ci, mcnemar_p(b, c), b, c, n, resamples, seed)


# --------------------------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------------------------


def format_p(p: float | None) -> str:
    """``"1"``, ``"0.0625"``, ``"0.0031"``, ``"<0.0001"``; ``"-"`` for None."""
    if p is None:
        return "-"
    if p >= 1.0:
        return "1"
    if p < 1e-4:
        return "<0.0001"
    return f"{p:.2g}" if p < 0.01 else f"{p:.3g}"


def format_delta(
    delta: float | None, ci95: Sequence[float] | None, p: float | None = None, digits: int = 2
) -> str:
    """A difference with its interval, and ``n.s.`` unless :func:`significant`:
    ``"-3.40 [-5.00, -2.00] p<0.0001"``, ``"-0.40 [-1.00, +0.00] p=0.5 n.s."``; with ``p`` None the
    p-value is left out (the verdict still needs it: without it the difference is n.s.). ``"-"``
    when there is no comparison."""
    if delta is None or ci95 is None:
        return "-"
    lo, hi = ci95
    text = f"{delta:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"
    if p is not None:
        shown = format_p(p)
        text += f" p{shown}" if shown.startswith("<") else f" p={shown}"
    return text if significant(ci95, p) else text + " n.s."


def format_top1_ci(top1: float | None, ci95: Sequence[float] | None, digits: int = 2) -> str:
    """``"99.80 [98.84, 99.96]"``; ``"-"`` when there is no top-1."""
    if top1 is None:
        return "-"
    if ci95 is None:
        return f"{top1:.{digits}f}"
    return f"{top1:.{digits}f} [{ci95[0]:.{digits}f}, {ci95[1]:.{digits}f}]"


def statistics_cells(row: Mapping[str, Any], digits: int = 2) -> list[str]:
    """The table cells of a row holding :data:`STAT_FIELDS` (and ``top1``): top-1 with its interval,
    the difference to the unpruned model, the difference to STA, and which STA setting.
    Differences read ``"-0.40 [-1.00, +0.00] p=0.5 n.s."`` (:func:`format_delta`)."""
    return [
        format_top1_ci(row.get("top1"), row.get("top1_ci95"), digits),
        format_delta(row.get("delta_top1_vs_unpruned"), row.get("delta_ci95"), row.get("mcnemar_p"), digits),
        format_delta(
            row.get("delta_top1_vs_sta"), row.get("delta_ci95_vs_sta"), row.get("mcnemar_p_vs_sta"), digits
        ),
        row.get("sta_setting") or "-",
    ]


#: the headers of :func:`statistics_cells`
STATISTICS_HEADERS: tuple[str, ...] = ("top-1 % [95% CI]", "vs unpruned", "vs STA", "STA at")


def statistics_notes(unit: str = "clip", resamples: int = RESAMPLES, seed: int = SEED) -> list[str]:
    """What the columns of :func:`statistics_cells` mean, for the lines under a table; ``unit``
    names what was counted (``"video"``, ``"clip"``)."""
    return [
        f"95% CI of top-1: Wilson score interval over the {unit}s evaluated.",
        f"vs unpruned, vs STA: top-1 difference in points on the same {unit}s (paired), its 95% paired "
        f"bootstrap interval ({resamples:,} resamples of the {unit}s, seed {seed}) and the exact McNemar "
        "p-value; vs STA: the STA setting of the nearest FLOPs ratio (STA at).",
        "n.s.: not significant, the interval covers 0 or p >= 0.05: no evidence of a difference "
        "(which is not evidence that there is none).",
    ]


# --------------------------------------------------------------------------------------------
# a sweep
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingCorrectness:
    """One setting of a sweep and what it got right.

    Attributes:
        method: ``"none"`` for the unpruned model, ``"sta"``, ...
        setting: its label (``"flops_target=0.7"``), what ``sta_setting`` names.
        flops_ratio: its FLOPs ratio to the unpruned model (None: unknown; it is then compared
            with no STA setting).
        correct: per unit (a video id, a clip index) whether its top-1 was right; units that
            could not be evaluated are left out. Two settings are compared on the units both have.
    """

    method: str
    setting: str
    flops_ratio: float | None
    correct: Mapping[Hashable, bool]


def _paired(a: Mapping[Hashable, bool], b: Mapping[Hashable, bool]) -> tuple[np.ndarray, np.ndarray]:
    """The correctness of the units both have, in ``a``'s order."""
    keys = [k for k in a if k in b]
    return np.array([bool(a[k]) for k in keys], dtype=bool), np.array([bool(b[k]) for k in keys], dtype=bool)


def nearest_sta(settings: Sequence[SettingCorrectness], i: int) -> int | None:
    """The index of the STA setting whose FLOPs ratio is closest to setting ``i``'s (distances to
    1e-9; the first on a tie); None for the unpruned model, for STA itself, for an unknown ratio,
    or with no STA setting (with a ratio and a clip)."""
    me = settings[i]
    if me.method in ("none", "sta") or me.flops_ratio is None:
        return None
    stas = [
        j for j, s in enumerate(settings) if s.method == "sta" and s.flops_ratio is not None and s.correct
    ]
    if not stas:
        return None
    # distances rounded to 1e-9: ratios that are equally far apart in decimal tie (the first wins)
    return min(stas, key=lambda j: round(abs(settings[j].flops_ratio - me.flops_ratio), 9))  # type: ignore[operator]


def _comparison_fields(a: SettingCorrectness, b: SettingCorrectness, resamples: int, seed: int) -> tuple:
    x, y = _paired(a.correct, b.correct)
    if x.size == 0:
        return None, None, None
    r = compare(x, y, resamples=resamples, seed=seed)
    return r.delta, list(r.ci95), r.mcnemar_p


def sweep_statistics(
    settings: Sequence[SettingCorrectness], resamples: int = RESAMPLES, seed: int = SEED
) -> list[dict[str, Any]]:
    """Per setting, the fields :data:`STAT_FIELDS` (JSON-ready; None where they do not apply):

    - ``top1_ci95``: ``[lo, hi]``, the 95% Wilson interval of its top-1 (percent);
    - ``delta_top1_vs_unpruned``, ``delta_ci95``, ``mcnemar_p``: its difference to the unpruned
      model (``method == "none"``), on the units both evaluated (:func:`compare`); None for the
      unpruned model itself;
    - ``delta_top1_vs_sta``, ``delta_ci95_vs_sta``, ``mcnemar_p_vs_sta``, ``sta_setting``: the same
      against the STA setting of the nearest FLOPs ratio (:func:`nearest_sta`) and that setting's
      label; None for the unpruned model, STA itself, or without STA.

    Deterministic: the same correctness gives the same fields (every bootstrap uses ``seed``).
    """
    base = next((j for j, s in enumerate(settings) if s.method == "none"), None)
    out = []
    for i, s in enumerate(settings):
        fields: dict[str, Any] = dict.fromkeys(STAT_FIELDS)
        n = len(s.correct)
        if n:
            lo, hi = wilson_interval(sum(bool(v) for v in s.correct.values()), n)
            fields["top1_ci95"] = [100.0 * lo, 100.0 * hi]
        if base is not None and i != base and n:
            d, ci, p = _comparison_fields(s, settings[base], resamples, seed)
            fields.update({"delta_top1_vs_unpruned": d, "delta_ci95": ci, "mcnemar_p": p})
        j = nearest_sta(settings, i)
        if j is not None and n:
            d, ci, p = _comparison_fields(s, settings[j], resamples, seed)
            if d is not None:
                fields.update(
                    {
                        "delta_top1_vs_sta": d,
                        "delta_ci95_vs_sta": ci,
                        "mcnemar_p_vs_sta": p,
                        "sta_setting": settings[j].setting,
                    }
                )
        out.append(fields)
    return out
