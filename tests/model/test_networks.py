import pytest
import torch

from napari_asymseg.config import ModelConfig
from napari_asymseg.model.networks import MODELS, build_model, plan_network


def test_anisotropic_plan_keeps_thick_slices():
    plan = plan_network((5.0, 0.7, 0.7), (40, 512, 512), 4)
    assert plan.kernels[0] == (1, 3, 3)  # no blurring across 5 mm slices at full resolution
    assert plan.strides[1] == (1, 2, 2)  # pool in-plane first
    # never pool the thick axis (no slice-parity artefact), but see the neighbouring slices
    # once in-plane voxels have grown
    assert all(s[0] == 1 for s in plan.strides)
    assert plan.kernels[-1] == (3, 3, 3)
    z_extent = plan.patch_size[0] * 5.0
    y_extent = plan.patch_size[1] * 0.7
    assert 0.5 < z_extent / y_extent < 2.0  # similar physical size along every axis


def test_isotropic_plan_and_divisibility():
    plan = plan_network((1.0, 1.0, 1.0), (181, 217, 181), 4)
    assert all(k == (3, 3, 3) for k in plan.kernels)
    for axis in range(3):
        total = 1
        for s in plan.strides:
            total *= s[axis]
        assert plan.patch_size[axis] % total == 0


def test_given_patch_is_rounded_to_the_strides():
    plan = plan_network((1.0, 1.0, 1.0), (50, 50, 50), 3, patch_size=(10, 30, 30))
    # z (10) is pooled once (to 5, below 8 no further); y and x twice: 30 -> 32
    assert plan.patch_size == (10, 32, 32)
    assert [s[0] for s in plan.strides] == [1, 2, 1]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_build_and_run(name):
    plan = plan_network((2.0, 0.8, 0.8), (16, 64, 64), 3, patch_size=(8, 32, 32))
    net = build_model(ModelConfig(name=name, filters=(4, 8, 16)), plan, out_channels=3)
    out = net(torch.zeros(1, 1, *plan.patch_size))
    assert out.shape == (1, 3, *plan.patch_size)


def test_bad_model_config():
    plan = plan_network((1, 1, 1), (32, 32, 32), 3)
    with pytest.raises(ValueError, match="unknown model"):
        build_model(ModelConfig(name="vit"), plan)
    with pytest.raises(ValueError, match="at least 3"):
        build_model(ModelConfig(filters=(4, 8)), plan)


def test_only_axes_thick_in_the_scan_are_never_pooled():
    # 2 mm next to 0.8 mm is thick (2.5x); 1.5 mm next to 1 mm is not
    assert all(s[0] == 1 for s in plan_network((2.0, 0.8, 0.8), (40, 112, 112), 4).strides)
    assert any(s[0] == 2 for s in plan_network((1.5, 1.0, 1.0), (64, 64, 64), 4).strides)
