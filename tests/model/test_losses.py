"""Tests for napari_asymseg.losses: hand-computed values, MONAI equivalences, masking, API."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.losses import DiceLoss as MonaiDice
from monai.losses import GeneralizedDiceLoss as MonaiGDL

from napari_asymseg.model.losses import (
    LOSSES,
    MarginFocalCE,
    build_loss,
    loss_parameters,
    target_to_onehot,
)

NAMES = list(LOSSES)
CE_FAMILY = ["ce", "large_margin", "asym_large_margin", "focal", "asym_focal"]


def lsm(z: list[float], c: int) -> float:
    """log softmax(z)[c], by hand."""
    return z[c] - math.log(sum(math.exp(v) for v in z))


def q(z: list[float], c: int) -> float:
    return math.exp(lsm(z, c))


# ---------------------------------------------------------------- hand-computed values
# One batch, two classes, three voxels (1-D spatial): columns are voxels.
Z3 = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]  # per voxel (z_bg, z_fg)
T3 = [1, 0, 1]
LOGITS3 = torch.tensor(Z3).T.unsqueeze(0)  # [1, 2, 3]
TARGET3 = torch.tensor([T3])  # [1, 3]


def _focal_term(z: list[float], c: int, gamma: float) -> float:
    return (1 - q(z, c)) ** gamma * -lsm(z, c)


# -log q̂ per voxel, with the margin already subtracted from the true logit by hand
_CE = (-lsm([0, 0], 1) - lsm([1, 0], 0) - lsm([0, 2], 1)) / 3
_LM = (-lsm([0, -1], 1) - lsm([0, 0], 0) - lsm([0, 1], 1)) / 3
_ALM = (-lsm([0, -1], 1) - lsm([1, 0], 0) - lsm([0, 1], 1)) / 3
_FOCAL = (_focal_term([0, 0], 1, 2) + _focal_term([1, 0], 0, 2) + _focal_term([0, 2], 1, 2)) / 3
_AFOCAL = (-lsm([0, 0], 1) + _focal_term([1, 0], 0, 2) - lsm([0, 2], 1)) / 3
_AFOCAL_M1 = (-lsm([0, -1], 1) + _focal_term([1, 0], 0, 2) - lsm([0, 1], 1)) / 3
_FOCAL_M1 = (_focal_term([0, -1], 1, 2) + _focal_term([0, 0], 0, 2) + _focal_term([0, 1], 1, 2)) / 3
_WCE_13 = -(3 * lsm([0, 0], 1) + lsm([1, 0], 0) + 3 * lsm([0, 2], 1)) / 3

_P1 = [q(z, 1) for z in Z3]  # foreground probabilities
_P0 = [1 - p for p in _P1]
_R1 = [1.0, 0.0, 1.0]
_R0 = [0.0, 1.0, 0.0]
_EPS = 1e-5


def _dice_c(p: list[float], r: list[float]) -> float:
    inter = sum(a * b for a, b in zip(p, r, strict=True))
    return (2 * inter + _EPS) / (sum(p) + sum(r) + _EPS)


_DICE = 1 - (_dice_c(_P0, _R0) + _dice_c(_P1, _R1)) / 2
# GDLv: w0 = 1/1², w1 = 1/2²
_GDL = 1 - 2 * (1.0 * _P0[1] + 0.25 * (_P1[0] + _P1[2])) / (
    1.0 * (sum(_P0) + 1) + 0.25 * (sum(_P1) + 2)
)
_SS = 0.05 * ((1 - _P1[0]) ** 2 + (1 - _P1[2]) ** 2) / (2 + _EPS) + 0.95 * _P1[1] ** 2 / (1 + _EPS)
# Tversky (alpha=0.3 on FP, beta=0.7 on FN), (tp, fp, fn) per class, mean over both classes
_TV_COUNTS = [
    (_P0[1], _P0[0] + _P0[2], 1 - _P0[1]),
    (_P1[0] + _P1[2], _P1[1], 2 - _P1[0] - _P1[2]),
]
_TV = 1 - sum((tp + _EPS) / (tp + 0.3 * fp + 0.7 * fn + _EPS) for tp, fp, fn in _TV_COUNTS) / 2


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("ce", {}, _CE),
        ("large_margin", {}, _LM),
        ("asym_large_margin", {}, _ALM),
        ("focal", {}, _FOCAL),
        ("focal", {"margin": 1.0}, _FOCAL_M1),
        ("asym_focal", {}, _AFOCAL),
        ("asym_focal", {"margin": 1.0}, _AFOCAL_M1),
        ("wce", {"weights": [1.0, 3.0]}, _WCE_13),
        ("wce", {"weights": "1, 3"}, _WCE_13),
        ("dice", {}, _DICE),
        ("gdl", {}, _GDL),
        ("ss", {}, _SS),
        ("tversky", {}, _TV),
        ("combo", {"losses": "0.5*dice + 2*ce"}, 0.5 * _DICE + 2 * _CE),
        ("combo", {"losses": {"ss": 1.0, "asym_focal": 1.0}, "margin": 1.0}, _SS + _AFOCAL_M1),
    ],
    ids=lambda v: "" if isinstance(v, float) else None,  # no long floats in test ids
)
def test_hand_computed(name, params, expected):
    value = build_loss(name, **params)(LOGITS3, TARGET3)
    assert value.ndim == 0
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_wce_auto_weights_by_hand():
    z = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 2.0]]
    logits = torch.tensor(z).T.unsqueeze(0)
    # 3 background, 1 foreground voxel: w = (N - Σr)/Σr = 3
    got = build_loss("wce")(logits, torch.tensor([[0, 0, 0, 1]]))
    want = -(lsm(z[0], 0) + lsm(z[1], 0) + lsm(z[2], 0) + 3 * lsm(z[3], 1)) / 4
    assert got.item() == pytest.approx(want, rel=1e-6)
    # one background voxel ignored: w = 2, N = 3
    got = build_loss("wce")(logits, torch.tensor([[0, 0, -1, 1]]))
    want = -(lsm(z[0], 0) + lsm(z[1], 0) + 2 * lsm(z[3], 1)) / 3
    assert got.item() == pytest.approx(want, rel=1e-6)
    # clip: 5 background, 1 foreground, max_weight 2
    logits6 = torch.zeros(1, 2, 6)
    got = build_loss("wce", max_weight=2.0)(logits6, torch.tensor([[0, 0, 0, 0, 0, 1]]))
    assert got.item() == pytest.approx(-(5 + 2) * math.log(0.5) / 6, rel=1e-6)


def test_wce_auto_absent_class_weight_one_and_detached():
    loss = build_loss("wce")
    y, _ = target_to_onehot(torch.tensor([[0, 0, 2, -1]]), 3)
    w = loss.class_weights(y)
    assert w.tolist() == pytest.approx([1.0, 1.0, 2.0])  # class 1 absent -> 1
    assert not w.requires_grad


def test_gdl_absent_class_gets_largest_finite_weight():
    z = Z3
    p1 = [q(v, 1) for v in z]
    # all background: w0 = 1/9, w1 = inf -> 1/9
    got = build_loss("gdl")(LOGITS3, torch.tensor([[0, 0, 0]]))
    want = 1 - 2 * (sum(1 - p for p in p1)) / ((3 - sum(p1)) + 3 + sum(p1))
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_soft_zero_row_contributes_zero_but_counts_in_n():
    soft = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])  # voxel 1 is an all-zero row
    assert build_loss("ce")(LOGITS3, soft).item() == pytest.approx(
        -(lsm(Z3[0], 0) + lsm(Z3[2], 1)) / 3, rel=1e-6
    )
    assert build_loss("asym_focal")(LOGITS3, soft).item() == pytest.approx(
        (_focal_term(Z3[0], 0, 2) - lsm(Z3[2], 1)) / 3, rel=1e-6
    )
    # overlap losses have no N: a zero row is dropped like an ignored voxel
    for name in ["dice", "gdl", "ss", "tversky"]:
        loss = build_loss(name)
        assert loss(LOGITS3, soft).item() == pytest.approx(
            loss(LOGITS3, torch.tensor([[0, -1, 1]])).item(), rel=1e-6
        )


# ---------------------------------------------------------------- identities
def _random(shape=(2, 3, 5, 6, 4), seed=0, ignore=0.2, absent=None):
    g = torch.Generator().manual_seed(seed)
    b, c, *s = shape
    logits = torch.randn(shape, generator=g) * 3
    target = torch.randint(0, c, (b, *s), generator=g)
    if absent is not None:
        target[target == absent] = 0
    target[torch.rand(target.shape, generator=g) < ignore] = -1
    return logits, target


@pytest.mark.parametrize("shape", [(2, 2, 7, 5), (2, 3, 5, 6, 4), (1, 4, 3, 3, 3)])
def test_ce_equals_torch(shape):
    logits, target = _random(shape)
    want = F.cross_entropy(logits, target, ignore_index=-1)
    torch.testing.assert_close(build_loss("ce")(logits, target), want)
    torch.testing.assert_close(build_loss("focal", gamma=0.0)(logits, target), want)
    torch.testing.assert_close(build_loss("asym_focal", gamma=0.0)(logits, target), want)
    torch.testing.assert_close(build_loss("large_margin", margin=0.0)(logits, target), want)
    torch.testing.assert_close(build_loss("asym_large_margin", margin=0.0)(logits, target), want)


def test_asymmetric_reduces_to_symmetric():
    logits, target = _random()
    every = [0, 1, 2]
    for m, g in [(1.0, 0.0), (0.0, 2.0), (1.0, 2.0)]:
        # every class rare: the margin applies to all classes and no class is attenuated
        asym_all = MarginFocalCE(m, g, asymmetric=True, rare_classes=every)(logits, target)
        torch.testing.assert_close(asym_all, MarginFocalCE(m, 0.0)(logits, target))
        # no class rare: no margin, and every class attenuated
        asym_none = MarginFocalCE(m, g, asymmetric=True, rare_classes=[])(logits, target)
        torch.testing.assert_close(asym_none, MarginFocalCE(0.0, g)(logits, target))


def test_asym_focal_leaves_foreground_unattenuated():
    logits, target = _random(ignore=0.0)
    fg_only = torch.where(target == 0, 1, target)
    torch.testing.assert_close(
        build_loss("asym_focal")(logits, fg_only), build_loss("ce")(logits, fg_only)
    )
    assert build_loss("focal")(logits, fg_only) < build_loss("ce")(logits, fg_only)
    # rare_classes restricts which classes escape attenuation
    got = build_loss("asym_focal", rare_classes="2")(logits, fg_only)
    assert got < build_loss("ce")(logits, fg_only)


@pytest.mark.parametrize("shape", [(2, 2, 8, 8), (2, 3, 5, 6, 4), (3, 4, 6, 5)])
def test_dice_equals_monai(shape):
    logits, target = _random(shape, ignore=0.0)
    onehot = F.one_hot(target, shape[1]).movedim(-1, 1).float()
    monai = MonaiDice(
        include_background=True, softmax=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5
    )
    torch.testing.assert_close(build_loss("dice")(logits, target), monai(logits, onehot))
    torch.testing.assert_close(build_loss("dice")(logits, onehot), monai(logits, onehot))


@pytest.mark.parametrize(("shape", "absent"), [((2, 2, 8, 8), None), ((2, 4, 5, 6, 4), 2)])
def test_gdl_equals_monai(shape, absent):
    # METHODS.md's GDLv has no smoothing term; MONAI adds smooth_nr/smooth_dr (1e-5) to the
    # weighted sums, which are ~1/N here, so the defaults differ by ~1e-3. With both smooth
    # terms at 0, MONAI's formula (denominator 2·TP + FP + FN = Σp + Σr, infinite weights
    # replaced by the batch max) is the same as ours up to float rounding.
    logits, target = _random(shape, ignore=0.0, absent=absent)
    onehot = F.one_hot(target, shape[1]).movedim(-1, 1).float()
    monai = MonaiGDL(softmax=True, batch=True, smooth_nr=0.0, smooth_dr=0.0)
    torch.testing.assert_close(build_loss("gdl")(logits, target), monai(logits, onehot))


@pytest.mark.parametrize("name", NAMES)
def test_perfect_prediction_is_minimum(name):
    _, target = _random(ignore=0.1)
    onehot, _ = target_to_onehot(target, 3)
    logits = 40.0 * (2 * onehot - 1)
    assert build_loss(name)(logits, target).item() == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_finite_gradients_with_absent_class_and_ignored(name, scale):
    logits, target = _random(shape=(2, 4, 5, 6, 3), absent=3)
    logits = (logits * scale).requires_grad_()
    build_loss(name)(logits, target).backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_ignored_voxels_have_no_influence(name):
    logits, target = _random()
    ignored = (target == -1).unsqueeze(1).expand_as(logits)
    other = torch.where(ignored, torch.randn_like(logits) * 50, logits)
    other[:, 0][target == -1] = float("nan")  # garbage under unannotated voxels must not leak
    a, b = logits.clone().requires_grad_(), other.clone().requires_grad_()
    la, lb = build_loss(name)(a, target), build_loss(name)(b, target)
    la.backward()
    lb.backward()
    torch.testing.assert_close(la, lb)
    torch.testing.assert_close(a.grad, b.grad)
    assert (a.grad[ignored] == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_all_ignored_gives_zero_with_grad(name):
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    value = build_loss(name)(logits, torch.full((2, 4, 4), -1))
    assert value.item() == 0.0
    assert value.grad_fn is not None
    value.backward()
    assert (logits.grad == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_onehot_soft_target_equals_index_target(name):
    logits, target = _random()
    onehot, valid = target_to_onehot(target, 3)
    soft = torch.where(valid.bool(), onehot, -1.0)  # negative rows mark ignored voxels
    loss = build_loss(name)
    torch.testing.assert_close(loss(logits, soft), loss(logits, target))
    torch.testing.assert_close(loss(logits, target.unsqueeze(1)), loss(logits, target))


def test_bf16_autocast_computes_in_float32():
    logits, target = _random()
    low = logits.bfloat16()
    for name in NAMES:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = build_loss(name)(low, target)
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, build_loss(name)(low.float(), target))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    logits, target = _random()
    for name in NAMES:
        cpu = build_loss(name)(logits, target)
        with torch.autocast("cuda", dtype=torch.float16):
            gpu = build_loss(name)(logits.cuda().half(), target.cuda())
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), build_loss(name)(logits.half().float(), target))
        assert cpu.isfinite()


# ---------------------------------------------------------------- registry API
def test_build_loss_errors():
    with pytest.raises(ValueError, match=r"unknown loss 'dise'; valid names: ce, .*tversky"):
        build_loss("dise")
    with pytest.raises(ValueError, match=r"no parameter 'gama'.*margin, gamma"):
        build_loss("asym_focal", gama=2.0)
    with pytest.raises(ValueError, match="no parameter 'asymmetric'"):
        build_loss("focal", asymmetric=True)
    with pytest.raises(ValueError, match="has parameter 'gamma'"):
        build_loss("combo", losses="dice+wce", gamma=2.0)
    with pytest.raises(ValueError, match="unknown loss 'combo' in combo"):
        build_loss("combo", losses="dice+combo")
    with pytest.raises(ValueError, match="bad combo term"):
        build_loss("combo", losses="dice+*ce")
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        build_loss("focal", gamma=-1.0)
    with pytest.raises(ValueError, match="out of range"):
        build_loss("asym_focal", rare_classes=[3])(*_random())
    with pytest.raises(ValueError, match="2 weights for 3 classes"):
        build_loss("wce", weights=[1, 2])(*_random())
    with pytest.raises(ValueError, match="weights must be a list of numbers"):
        build_loss("wce", weights="one, two")
    with pytest.raises(ValueError, match="logits must be"):
        build_loss("ce")(torch.zeros(2, 1, 4), torch.zeros(2, 4, dtype=torch.long))


def test_loss_parameters():
    params = loss_parameters("asym_focal")
    assert params["margin"] == (float, 0.0)
    assert params["gamma"] == (float, 2.0)
    assert params["ignore_index"] == (int, -1)
    assert "rare_classes" in params and "asymmetric" not in params
    assert loss_parameters("asym_large_margin")["margin"] == (float, 1.0)
    assert loss_parameters("wce")["weights"][1] == "auto"
    assert loss_parameters("ss")["lam"] == (float, 0.05)
    assert set(loss_parameters("combo")) == {"losses", "ignore_index"}
    assert set(loss_parameters("gdl")) == {"ignore_index"}
    with pytest.raises(ValueError, match="valid names"):
        loss_parameters("nope")
    # every registered loss builds from its own defaults, as a GUI would
    for name in NAMES:
        build_loss(name, **{k: d for k, (_, d) in loss_parameters(name).items()})


# ---------------------------------------------------------------- property test
@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    classes=st.integers(2, 4),
    spatial=st.sampled_from([(3, 4), (2, 3, 3)]),
    batch=st.integers(1, 2),
    ignore=st.sampled_from([0.0, 0.3, 1.0]),
    scale=st.sampled_from([0.1, 5.0, 60.0]),
    soft=st.booleans(),
)
def test_losses_finite_and_non_negative(seed, classes, spatial, batch, ignore, scale, soft):
    logits, target = _random((batch, classes, *spatial), seed=seed, ignore=ignore)
    logits = logits * scale
    if soft:
        g = torch.Generator().manual_seed(seed)
        y = torch.rand((batch, classes, *spatial), generator=g)
        target = y / y.sum(1, keepdim=True)
    for name in NAMES:
        value = build_loss(name)(logits, target)
        assert torch.isfinite(value), name
        assert value.item() >= -1e-6, name
