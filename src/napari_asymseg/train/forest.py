"""Labels for the voxels nobody painted: an ilastik-style random forest as the network's teacher.

Painted on two slices, a 3D network from scratch sees a few hundred lesion voxels and a few
slices of background; on the rest of the scan it meets anatomy it never saw and calls some of
it lesion (measured on the pyradiomics brain1 MR: 49,800 false-positive voxels with all
painted slices trained on, docs/training.md). A random forest on fixed multiscale features
(ilastik's pixel classifier; Sommer et al. 2011, Berg et al. 2019) generalises from the same
paint far better, but is blind to anything larger than its features. Here it labels the
unpainted voxels, and the network trains on the painted voxels plus a share of the forest's
labels (:class:`~napari_asymseg.train.data.PatchSampler`): a teacher-student scheme, as in
semi-supervised segmentation, that shows the network the whole scan. The forest exists only
during training; the model is the network alone.

Memory and time are bounded: features are computed slice by slice, the forest learns from at
most :data:`MAX_TRAIN_VOXELS` painted voxels and labels at most :data:`MAX_SLICES` slices
(evenly spaced; the others stay unlabelled).
"""

from __future__ import annotations

import numpy as np

from napari_asymseg.store.annotations import IGNORE

SIGMA_MIN, SIGMA_MAX = 1.0, 16.0
"""The features' Gaussian scales in voxels (ilastik's defaults span 0.3-10)."""
TREES = 50
MAX_TRAIN_VOXELS = 100_000
MAX_SLICES = 64


def slice_features(plane: np.ndarray) -> np.ndarray:
    """Intensity, edge and texture features of one slice at sigmas 1-16: ``[Y, X, F]``."""
    from skimage.feature import multiscale_basic_features

    return multiscale_basic_features(
        np.asarray(plane, dtype=np.float32),
        intensity=True,
        edges=True,
        texture=True,
        sigma_min=SIGMA_MIN,
        sigma_max=SIGMA_MAX,
    ).astype(np.float32)


def forest_labels(image: np.ndarray, target: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """The forest's class for every voxel of up to :data:`MAX_SLICES` slices (``IGNORE``
    elsewhere), trained on the voxels where ``target >= 0``.

    Parameters
    ----------
    image
        The normalised scan ``[Z, Y, X]``.
    target
        Class indices, ``IGNORE`` where not painted (or held out for validation).
    """
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    painted_slices = np.flatnonzero((target >= 0).any(axis=(1, 2)))
    total = int((target >= 0).sum())
    keep = min(1.0, MAX_TRAIN_VOXELS / max(total, 1))
    xs, ys = [], []
    for z in painted_slices:
        where = np.flatnonzero(target[z].ravel() >= 0)
        if keep < 1.0:
            where = rng.choice(where, max(1, int(round(where.size * keep))), replace=False)
        feats = slice_features(image[z])
        feats = feats.reshape(-1, feats.shape[-1])
        xs.append(feats[where])
        ys.append(target[z].ravel()[where])
    y = np.concatenate(ys)
    forest = RandomForestClassifier(
        n_estimators=TREES,
        class_weight="balanced",
        min_samples_leaf=2,
        n_jobs=-1,
        random_state=seed,
    )
    forest.fit(np.concatenate(xs), y)
    labels = np.full(image.shape, IGNORE, np.int16)
    depth = image.shape[0]
    for z in np.unique(np.linspace(0, depth - 1, min(depth, MAX_SLICES)).round().astype(int)):
        feats = slice_features(image[z])
        labels[z] = forest.predict(feats.reshape(-1, feats.shape[-1])).reshape(image.shape[1:])
    return labels
