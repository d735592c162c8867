"""The line under the training curves: what they say, in a clinician's words.

From the validations of a run (the rows of ``best.pt``'s history, or the dock's live events),
the first rule that holds decides the line. The rules and their thresholds are documented in
the user guide ("What the curves say"); they read the same numbers the curves show:

1. the mean foreground margin on the training patches negative at the last two validations:
   the painted lesion is not learned yet (the training Notice says the same). In the first
   :data:`EARLY` of a run that is still training this is usual (the model starts by calling
   everything background), and the line says the run is still learning instead;
2. nothing held out (every DSC is NaN): the curves cannot judge the model;
3. the held-out DSC fell by more than :data:`DROP` after its best: overfitting (the best
   model is kept);
4. the held-out lesion's margin behind the training lesion's by more than :data:`SHIFT`
   (logit shift Δ < -SHIFT at the last validation): the model is sure of the painted lesion
   and unsure of the held-out one, the overfitting Li et al. describe;
5. best held-out DSC below :data:`WEAK`: paint more;
6. best held-out DSC at least :data:`GOOD`: good on the held-out slices;
7. otherwise fair. Rules 5-7 add "still improving" when the best was the last validation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

DROP = 0.1
"""A fall of the held-out DSC after its best that rule 3 calls overfitting."""
SHIFT = 1.0
"""Logit shift Δ below minus this is rule 4's overfitting."""
EARLY = 0.5
"""The fraction of a running run's steps before which rule 1 says "still learning"."""
WEAK, GOOD = 0.5, 0.7
"""Best held-out DSC below WEAK is weak, at least GOOD is good."""


def _value(row: Mapping[str, Any], key: str) -> float:
    value = row.get(key)
    return float(value) if isinstance(value, int | float) else math.nan


def training_verdict(history: Sequence[Mapping[str, Any]], done: float | None = None) -> str:
    """One line on a run's validations (``step``, ``dsc``, ``train_margin``, ``logit_shift``);
    ``done``: the fraction of its steps a run still training has done (None: it ended)."""
    if not history:
        return ""
    scored = [h for h in history if math.isfinite(_value(h, "dsc"))]
    margins = [_value(h, "train_margin") for h in history[-2:]]
    if len(margins) == 2 and all(m < 0 for m in margins):  # NaN < 0 is False
        if done is not None and done < EARLY:
            return (
                f"Still learning the painted lesion ({done:.0%} of the run): the model calls most "
                "of it background so far, as usual early in a run."
            )
        return (
            "Not learned yet: the model still calls most of the painted lesion background. "
            "Train longer or with another seed, or paint the lesion on one more slice."
        )
    if not scored:
        return (
            "Nothing was held out, so the curves cannot judge the model: look at the "
            "prediction on unpainted slices, and at the quality figure below."
        )
    best = max(scored, key=lambda h: h["dsc"])
    last = scored[-1]
    at = f"best held-out DSC {best['dsc']:.2f} at step {best['step']}"
    if best["dsc"] - last["dsc"] > DROP:
        return (
            f"Overfitting: the held-out DSC fell from {best['dsc']:.2f} (step {best['step']}) to "
            f"{last['dsc']:.2f}; the best model is kept. More paint or an asymmetric loss helps."
        )
    shift = _value(history[-1], "logit_shift")
    if shift < -SHIFT:
        return (
            f"Overfitting the painted lesion ({at}): the held-out lesion sits near the decision "
            f"boundary (logit shift {shift:+.2f}). Paint more of it, or use an asymmetric loss."
        )
    rising = " Still improving at the last validation: more steps may help." if best is last else ""
    if best["dsc"] < WEAK:
        return (
            f"Weak ({at}): paint the lesion on another slice, away from the painted ones.{rising}"
        )
    if best["dsc"] >= GOOD:
        return (
            f"Good on the held-out painted slices ({at}): check the prediction elsewhere.{rising}"
        )
    return f"Fair ({at}): paint where the prediction is wrong (the review queue).{rising}"
