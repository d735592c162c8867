"""Tests for napari_asymseg.regularizers (METHODS.md section 3)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from napari_asymseg.model.regularizers import (
    adversarial_perturbation,
    class_balanced_weights,
    mixup,
    mixup_partner,
    sample_lambda,
    smooth_labels,
    weighted_ce,
)
from napari_asymseg.model.sam import SAM, sam_step

C = 4
RARE = (1, 2)  # class 3 is a non-rare foreground class, class 0 background
Z = None  # expected all-zero row

# (primary class a, partner class b, lam, expected class or Z), margin m = 0.2
MIXUP_RULES = [
    pytest.param(1, 1, 0.5, 1, id="a==b rare"),
    pytest.param(1, 1, 0.05, 1, id="a==b rare, lam below margin"),
    pytest.param(0, 0, 0.9, 0, id="a==b background"),
    pytest.param(3, 3, 0.5, 3, id="a==b non-rare foreground"),
    pytest.param(0, 1, 0.5, 1, id="b rare, 1-lam > m"),
    pytest.param(3, 1, 0.7, 1, id="b rare over non-rare a, 1-lam > m"),
    pytest.param(0, 1, 0.9, Z, id="b rare, 1-lam <= m"),
    pytest.param(1, 0, 0.5, 1, id="a rare, lam > m"),
    pytest.param(1, 3, 0.9, 1, id="a rare over non-rare b, lam > m"),
    pytest.param(1, 0, 0.1, Z, id="a rare, lam <= m"),
    pytest.param(1, 2, 0.5, 2, id="both rare, both pass: b wins"),
    pytest.param(1, 2, 0.9, 1, id="both rare, only a passes"),
    pytest.param(1, 2, 0.1, 2, id="both rare, only b passes"),
    pytest.param(0, 3, 0.5, Z, id="neither rare"),
    pytest.param(3, 0, 0.5, Z, id="neither rare, reversed"),
    pytest.param(-1, 1, 0.5, Z, id="a ignored"),
    pytest.param(1, -1, 0.5, Z, id="b ignored"),
    pytest.param(-1, -1, 0.5, Z, id="both ignored"),
]


def _expected_row(cls):
    return torch.zeros(C) if cls is None else F.one_hot(torch.tensor(cls), C).float()


def _mix_voxel(a, b, lam, **kw):
    x = torch.zeros(1, 1, 1, 1)
    ya, yb = torch.tensor([[[a]]]), torch.tensor([[[b]]])
    return mixup(x, ya, x, yb, lam, num_classes=C, rare_classes=RARE, **kw)[1][0, :, 0, 0]


@pytest.mark.parametrize(("a", "b", "lam", "expected"), MIXUP_RULES)
def test_asymmetric_mixup_rule(a, b, lam, expected):
    assert torch.equal(_mix_voxel(a, b, lam), _expected_row(expected))


def test_asymmetric_mixup_per_sample_lam_matches_table():
    rows = [p.values for p in MIXUP_RULES]
    ya = torch.tensor([r[0] for r in rows]).view(-1, 1, 1)
    yb = torch.tensor([r[1] for r in rows]).view(-1, 1, 1)
    lam = torch.tensor([r[2] for r in rows])
    x = torch.zeros(len(rows), 1, 1, 1)
    _, y_mix = mixup(x, ya, x, yb, lam, num_classes=C, rare_classes=RARE)
    expected = torch.stack([_expected_row(r[3]) for r in rows])
    assert torch.equal(y_mix[:, :, 0, 0], expected)


def test_default_rare_classes_are_all_foreground():
    x = torch.zeros(1, 1, 1, 1)
    _, y = mixup(x, torch.tensor([[[0]]]), x, torch.tensor([[[3]]]), 0.5, num_classes=C)
    assert torch.equal(y[0, :, 0, 0], _expected_row(3))  # class 3 rare by default
    assert torch.equal(_mix_voxel(0, 3, 0.5), torch.zeros(C))  # but not with RARE = (1, 2)


def test_vanilla_mixup_soft_labels_and_ignored():
    x = torch.zeros(1, 1, 1, 3)
    ya, yb = torch.tensor([[[0, 1, -1]]]), torch.tensor([[[3, 1, 2]]])
    _, y = mixup(x, ya, x, yb, 0.3, asymmetric=False, num_classes=C)
    expected = torch.tensor([[0.3, 0, 0, 0.7], [0, 1, 0, 0], [0, 0, 0, 0]]).T
    torch.testing.assert_close(y[0, :, 0], expected)


def test_x_mix_formula_with_per_sample_lam_3d():
    g = torch.Generator().manual_seed(0)
    xa, xb = torch.randn(2, 2, 3, 4, 5, generator=g), torch.randn(2, 2, 3, 4, 5, generator=g)
    y = torch.randint(0, C, (2, 3, 4, 5), generator=g)
    lam = torch.tensor([0.25, 0.9])
    x_mix, y_mix = mixup(xa, y, xb, y.flip(0), lam, num_classes=C)
    for i in range(2):
        torch.testing.assert_close(x_mix[i], lam[i] * xa[i] + (1 - lam[i]) * xb[i])
    assert y_mix.shape == (2, C, 3, 4, 5) and y_mix.dtype == torch.float32
    with pytest.raises(ValueError, match="lam"):
        mixup(xa, y, xb, y, torch.tensor([0.5, 0.5, 0.5]), num_classes=C)


def test_mixup_accepts_soft_targets():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 5, 5, generator=g)
    y = torch.randint(-1, C, (2, 5, 5), generator=g)
    soft = F.one_hot(y.clamp(min=0), C).movedim(-1, 1).float() * (y >= 0).unsqueeze(1)
    for asym in (True, False):
        ref = mixup(x, y, x.flip(0), y.flip(0), 0.6, asymmetric=asym, num_classes=C)[1]
        out = mixup(x, soft, x.flip(0), soft.flip(0), 0.6, asymmetric=asym, num_classes=C)[1]
        assert torch.equal(out, ref)


@settings(max_examples=30, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.integers(-1, C - 1), st.integers(-1, C - 1)), min_size=1, max_size=12
    ),
    lam=st.floats(0.0, 1.0),
    margin=st.floats(0.0, 0.6),
)
def test_mixup_rows_property(data, lam, margin):
    ya = torch.tensor([d[0] for d in data]).view(1, 1, -1)
    yb = torch.tensor([d[1] for d in data]).view(1, 1, -1)
    x = torch.zeros(1, 1, 1, len(data))
    valid = ((ya >= 0) & (yb >= 0))[:, None]
    _, hard = mixup(x, ya, x, yb, lam, margin=margin, num_classes=C)
    assert set(hard.unique().tolist()) <= {0.0, 1.0}
    assert set(hard.sum(1).unique().tolist()) <= {0.0, 1.0}
    assert torch.all(hard.sum(1, keepdim=True)[~valid] == 0)
    _, soft = mixup(x, ya, x, yb, lam, margin=margin, asymmetric=False, num_classes=C)
    sums = soft.sum(1, keepdim=True)
    torch.testing.assert_close(sums[valid], torch.ones_like(sums[valid]))
    assert torch.all(sums[~valid] == 0)


def test_mixup_partner_flip_and_pool():
    x, y = torch.arange(3.0).view(3, 1, 1, 1), torch.arange(3).view(3, 1, 1)
    xb, yb = mixup_partner(x, y)
    assert xb.flatten().tolist() == [2.0, 1.0, 0.0] and yb.flatten().tolist() == [2, 1, 0]
    pool = [(torch.full((1, 1, 1), float(i)), torch.full((1, 1), i)) for i in range(5)]
    picks = [
        mixup_partner(x[:1], y[:1], pool=pool, generator=torch.Generator().manual_seed(s))
        for s in (3, 3)
    ]
    assert picks[0][0].shape == (1, 1, 1, 1) and torch.equal(picks[0][0], picks[1][0])
    assert picks[0][1].dtype == y.dtype and int(picks[0][1]) == int(picks[0][0])
    with pytest.raises(ValueError, match="pool"):
        mixup_partner(x[:1], y[:1])


def test_sample_lambda():
    draws = [sample_lambda(0.2, torch.Generator().manual_seed(i)) for i in range(200)]
    assert all(0.0 <= d <= 1.0 for d in draws)
    assert sample_lambda(0.2, torch.Generator().manual_seed(7)) == draws[7]
    assert len(set(draws)) > 150
    assert sum(d < 0.1 or d > 0.9 for d in draws) > 80  # Beta(0.2, 0.2) is U-shaped
    assert sample_lambda(0.0) == 1.0


# ------------------------------------------------------------------ adversarial training


def _net(dim=2, bn=False, seed=0):
    torch.manual_seed(seed)
    conv = nn.Conv2d if dim == 2 else nn.Conv3d
    norm = (nn.BatchNorm2d if dim == 2 else nn.BatchNorm3d)(6) if bn else nn.Identity()
    return nn.Sequential(conv(2, 6, 3, padding=1), norm, nn.Tanh(), conv(6, 3, 1)).train()


def _batch(dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (3, 6, 6) if dim == 2 else (3, 4, 5, 5)
    x = torch.randn(shape[0], 2, *shape[1:], generator=g)
    y = torch.zeros(shape, dtype=torch.long)
    y[0, 1:3, 1:3] = 1  # sample 0: rare voxels
    y[1, 2, 2] = 2  # sample 1: one rare voxel of another class
    y[0, 0, 0] = -1  # sample 2: background only
    y[1, 0] = -1
    return x, y


def _rare_loss_grad(model, x, y, rare=True):
    x = x.clone().requires_grad_(True)
    ce = F.cross_entropy(model(x), y, ignore_index=-1, reduction="none")
    mask = (y > 0) if rare else (y >= 0)
    (g,) = torch.autograd.grad((ce * mask).sum() / (y >= 0).sum(), x)
    return g


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("asymmetric", [True, False])
def test_adversarial_norm_and_zero_samples(dim, asymmetric):
    model = _net(dim, bn=True)
    x, y = _batch(dim)
    r = adversarial_perturbation(model, x, y, eps=10.0, asymmetric=asymmetric)
    assert r.shape == x.shape and not r.requires_grad
    norms = r.flatten(1).norm(dim=1)
    torch.testing.assert_close(norms[:2], torch.full((2,), 10.0), rtol=1e-4, atol=0)
    # Sample 2 has no rare voxel: zero although BatchNorm couples it to the others.
    assert (norms[2] == 0).item() if asymmetric else abs(norms[2].item() - 10.0) < 1e-3


@pytest.mark.parametrize("asymmetric", [True, False])
def test_adversarial_direction_is_rare_loss_gradient(asymmetric):
    model = _net()
    x, y = _batch()
    r = adversarial_perturbation(model, x, y, eps=1.0, asymmetric=asymmetric)
    g = _rare_loss_grad(model, x, y, rare=asymmetric)
    cos = F.cosine_similarity(r.flatten(1), g.flatten(1), dim=1)
    assert torch.all(cos[:2] > 0.999), cos
    other = _rare_loss_grad(model, x, y, rare=not asymmetric)
    assert F.cosine_similarity(r.flatten(1), other.flatten(1), dim=1)[1] < 0.99


def test_adversarial_leaves_model_untouched():
    model = _net(bn=True)
    x, y = _batch()
    weight = model[0].weight
    weight.grad = torch.full_like(weight, 0.5)
    state = copy.deepcopy(model.state_dict())
    adversarial_perturbation(model, x, y)
    assert torch.equal(weight.grad, torch.full_like(weight, 0.5))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "0.weight")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # BN stats too
    assert model.training and x.grad is None and not x.requires_grad


def test_adversarial_x_requiring_grad_and_soft_labels():
    model = _net()
    x, y = _batch()
    xg = x.clone().requires_grad_(True)
    soft = F.one_hot(y.clamp(min=0), 3).movedim(-1, 1).float() * (y >= 0).unsqueeze(1)
    r_int = adversarial_perturbation(model, xg, y, generator=torch.Generator().manual_seed(0))
    r_soft = adversarial_perturbation(model, x, soft, generator=torch.Generator().manual_seed(0))
    assert xg.grad is None and not r_int.requires_grad
    torch.testing.assert_close(r_int, r_soft)
    only_ignored = y.clone()
    only_ignored[0][y[0] > 0] = -1  # sample 0's rare voxels unannotated
    r = adversarial_perturbation(model, x, only_ignored)
    assert r[0].abs().sum() == 0 and r[1].abs().sum() > 0


def test_adversarial_generator_determinism():
    model = _net()
    x, y = _batch()

    def run(seed):
        return adversarial_perturbation(
            model, x, y, xi=2.0, generator=torch.Generator().manual_seed(seed)
        )

    assert torch.equal(run(1), run(1))
    assert not torch.allclose(run(1), run(2))


# ------------------------------------------------------------------ label smoothing


def test_smooth_labels_per_class():
    y = torch.tensor([[[0, 1, 2, -1]]])
    out = smooth_labels(y, 3, [0.0, 0.3, 0.6])[0, :, 0]
    expected = torch.tensor([[1.0, 0.0, 0.0], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.0, 0.0, 0.0]]).T
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out.sum(0), torch.tensor([1.0, 1.0, 1.0, 0.0]))
    scalar = smooth_labels(y, 3, 0.3)[0, :, 0]
    torch.testing.assert_close(scalar[:, 0], torch.tensor([0.8, 0.1, 0.1]))
    with pytest.raises(ValueError):
        smooth_labels(y, 3, [0.1, 0.2])
    with pytest.raises(ValueError):
        smooth_labels(y, 3, 1.5)


# ------------------------------------------------------------------ SAM and SAM-A


def _ce(logits, y):
    return F.cross_entropy(logits, y, ignore_index=-1)


def _imbalanced():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2, 6, 6, generator=g)
    y = torch.zeros(2, 6, 6, dtype=torch.long)
    y[0, 2, 2], y[1, 3, 3:5] = 1, 2  # 3 rare voxels among 72
    return x, y


def _grads_at(model, params, x, y, loss_fn):
    m = copy.deepcopy(model)
    with torch.no_grad():
        for p, v in zip(m.parameters(), params, strict=True):
            p.copy_(v)
    loss_fn(m(x), y).backward()
    return [p.grad.clone() for p in m.parameters()]


def _global_norm(ts):
    return torch.sqrt(sum((t**2).sum() for t in ts))


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [(torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}), (torch.optim.Adam, {"lr": 0.01})],
)
def test_sam_rho_zero_equals_base(cls, kwargs):
    x, y = _imbalanced()
    model, ref = _net(), _net()
    sam, base = SAM(model.parameters(), cls, rho=0.0, **kwargs), cls(ref.parameters(), **kwargs)
    for _ in range(3):
        sam_step(model, sam, x, y, _ce)
        base.zero_grad()
        _ce(ref(x), y).backward()
        base.step()
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_first_step_moves_by_rho_and_second_step_restores_then_steps():
    x, y = _imbalanced()
    model = _net()
    params = list(model.parameters())
    groups = [{"params": params[:2]}, {"params": params[2:], "lr": 0.05}]
    sam = SAM(groups, torch.optim.SGD, rho=0.07, lr=0.1)
    w0 = [p.detach().clone() for p in params]
    _ce(model(x), y).backward()
    g0 = [p.grad.clone() for p in params]
    sam.first_step()
    e = [p.detach() - w for p, w in zip(params, w0, strict=True)]
    torch.testing.assert_close(_global_norm(e), torch.tensor(0.07))
    for ei, gi in zip(e, g0, strict=True):
        torch.testing.assert_close(ei, 0.07 * gi / _global_norm(g0))
    assert all(p.grad is None for p in params)
    _ce(model(x), y).backward()
    g_adv = [p.grad.clone() for p in params]
    sam.second_step()
    lrs = [0.1, 0.1, 0.05, 0.05]
    for p, w, g, lr in zip(params, w0, g_adv, lrs, strict=True):
        torch.testing.assert_close(p.detach(), w - lr * g)


def test_sam_closure_step_equals_sam_step_and_instance_wrapping():
    x, y = _imbalanced()
    m1, m2 = _net(), _net()
    s1 = SAM(m1.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    s2 = SAM(None, torch.optim.SGD(m2.parameters(), lr=0.1), rho=0.05)

    def closure():
        loss = _ce(m2(x), y)
        loss.backward()
        return loss

    l1, l2 = sam_step(m1, s1, x, y, _ce), s2.step(closure)
    torch.testing.assert_close(l1, l2.detach())
    for p, q in zip(m1.parameters(), m2.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    with pytest.raises(ValueError):
        SAM(m2.parameters(), torch.optim.SGD(m2.parameters(), lr=0.1))


def test_sam_restores_weights_when_second_pass_fails():
    x, y = _imbalanced()
    model = _net()
    sam = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    w0 = [p.detach().clone() for p in model.parameters()]
    calls = []

    def closure():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        loss = _ce(model(x), y)
        loss.backward()
        return loss

    with pytest.raises(RuntimeError):
        sam.step(closure)
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), w0, strict=True))


def test_sam_step_updates_batchnorm_stats_once():
    x, y = _imbalanced()
    model, ref = _net(bn=True), _net(bn=True)
    sam_step(model, SAM(model.parameters(), torch.optim.SGD, lr=0.1), x, y, _ce)
    ref(x)
    torch.testing.assert_close(model[1].running_mean, ref[1].running_mean)
    assert model[1].num_batches_tracked.item() == 1


def test_sam_converges_on_least_squares():
    g = torch.Generator().manual_seed(0)
    a, w_true = torch.randn(40, 5, generator=g), torch.randn(5, 1, generator=g)
    b = a @ w_true
    lin = nn.Linear(5, 1, bias=False)
    sam = SAM(lin.parameters(), torch.optim.SGD, rho=0.01, lr=0.05)

    def loss():
        return ((lin(a) - b) ** 2).mean()

    start = loss().item()
    for _ in range(300):
        sam.zero_grad()
        loss().backward()
        sam.first_step()
        loss().backward()
        sam.second_step()
    assert loss().item() < 1e-3 * start
    assert (lin.weight.detach().T - w_true).norm() < 0.05


def test_class_balanced_weights_and_weighted_ce():
    y = torch.zeros(1, 1, 12, dtype=torch.long)
    y[0, 0, :2], y[0, 0, 2:4], y[0, 0, 4] = 1, -1, 3  # counts: 7 bg, 2 class 1, 0, 1 class 3
    torch.testing.assert_close(class_balanced_weights(y, 4), torch.tensor([1.0, 3.5, 0.0, 7.0]))
    logits = torch.randn(1, 4, 1, 12)
    torch.testing.assert_close(weighted_ce(logits, y, torch.ones(4)), _ce(logits, y))
    w = torch.tensor([1.0, 3.5, 0.0, 7.0])
    per_voxel = F.cross_entropy(logits, y, ignore_index=-1, reduction="none")
    manual = (per_voxel * w[y.clamp(min=0)] * (y >= 0)).sum() / 10
    torch.testing.assert_close(weighted_ce(logits, y, w), manual)


def test_sam_a_ascent_uses_class_weighted_gradient():
    x, y = _imbalanced()
    rho, lr = 0.05, 0.1
    model = _net()
    w0 = [p.detach().clone() for p in model.parameters()]
    weights = class_balanced_weights(y, 3)
    assert weights[1] == 69 / 1 and weights[2] == 69 / 2

    def wce(logits, t):
        return weighted_ce(logits, t, weights)

    g_w, g = _grads_at(model, w0, x, y, wce), _grads_at(model, w0, x, y, _ce)
    e_a = [rho * gi / _global_norm(g_w) for gi in g_w]
    e_plain = [rho * gi / _global_norm(g) for gi in g]
    assert _global_norm([a - b for a, b in zip(e_a, e_plain, strict=True)]) > 0.01

    # first_step after the SAM-A ascent backward moves by exactly rho * g_w / ||g_w||.
    sam = SAM(model.parameters(), torch.optim.SGD, rho=rho, lr=lr)
    wce(model(x), y).backward()
    sam.first_step()
    for p, w, e in zip(model.parameters(), w0, e_a, strict=True):
        torch.testing.assert_close(p.detach() - w, e)
    sam._restore()

    # The full step descends along the *unweighted* gradient taken at w + e_A.
    for adaptive, e in ((True, e_a), (False, e_plain)):
        m = _net()
        sam_step(
            m,
            SAM(m.parameters(), torch.optim.SGD, rho=rho, lr=lr),
            x,
            y,
            _ce,
            adaptive_weights=adaptive,
        )
        g_adv = _grads_at(m, [w + ei for w, ei in zip(w0, e, strict=True)], x, y, _ce)
        for p, w, ga in zip(m.parameters(), w0, g_adv, strict=True):
            torch.testing.assert_close(p.detach(), w - lr * ga)


def test_sam_state_dict_roundtrip():
    x, y = _imbalanced()
    model = _net()
    sam = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    sam_step(model, sam, x, y, _ce)
    other = SAM(_net().parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    other.load_state_dict(sam.state_dict())
    assert other.param_groups is other.base_optimizer.param_groups
    assert other.param_groups[0]["rho"] == 0.05
    assert len(other.base_optimizer.state) == len(list(model.parameters()))
