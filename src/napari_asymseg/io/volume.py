"""The volume every reader returns: a (Z, Y, X) array with its affine to RAS mm."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_asymseg.store.geometry import spacing_from_affine


@dataclass(frozen=True)
class Volume:
    """A (Z, Y, X) array with its affine to RAS mm."""

    data: np.ndarray
    affine: np.ndarray
    source: str

    @property
    def spacing(self) -> tuple[float, float, float]:
        return spacing_from_affine(self.affine)
