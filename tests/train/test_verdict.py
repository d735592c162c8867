"""The line under the training curves: each rule, in its order."""

import math

from napari_asymseg.train.verdict import training_verdict

NAN = math.nan


def rows(*dscs, margin=1.0, shift=-0.2):
    return [
        {"step": 20 * (k + 1), "dsc": d, "train_margin": margin, "logit_shift": shift}
        for k, d in enumerate(dscs)
    ]


def test_each_rule_in_order():
    assert training_verdict([]) == ""
    assert training_verdict(rows(0.8, 0.8, margin=-0.5)).startswith("Not learned yet")
    # early in a running run a negative margin is usual: not "not learned" (seen for ~100 s)
    early = training_verdict(rows(0.8, 0.8, margin=-0.5), done=0.2)
    assert early.startswith("Still learning the painted lesion (20% of the run)")
    assert training_verdict(rows(0.8, 0.8, margin=-0.5), done=0.6).startswith("Not learned yet")
    assert training_verdict(rows(NAN, NAN)).startswith("Nothing was held out")
    over = training_verdict(rows(0.4, 0.82, 0.6))
    assert over.startswith("Overfitting: the held-out DSC fell from 0.82 (step 40) to 0.60")
    near = training_verdict(rows(0.6, 0.65, shift=-1.6))
    assert near.startswith("Overfitting the painted lesion") and "-1.60" in near
    assert training_verdict(rows(0.2, 0.3, 0.25)).startswith("Weak (best held-out DSC 0.30")
    good = training_verdict(rows(0.6, 0.84))
    assert good.startswith("Good on the held-out painted slices (best held-out DSC 0.84 at")
    assert good.endswith("more steps may help.")  # the best was the last validation
    fair = training_verdict(rows(0.66, 0.6))
    assert fair.startswith("Fair (best held-out DSC 0.66 at step 20)")
    assert "more steps" not in fair


def test_one_recovered_margin_is_not_unlearned_and_nan_rows_are_skipped():
    history = rows(0.5, 0.75, margin=-0.3)
    history[-1]["train_margin"] = 0.4
    assert training_verdict(history).startswith("Good")
    history.append({"step": 80, "dsc": NAN, "train_margin": 0.5, "logit_shift": NAN})
    assert training_verdict(history).startswith("Good")  # the last scored row decides
