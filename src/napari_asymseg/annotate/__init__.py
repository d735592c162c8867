"""Annotation tools: Qt-free functions from a scan's paint to a proposal the user accepts.

:mod:`.interpolate` fills a lesion between two painted slices (``asymseg fill``; the dock
previews it). A tool proposes annotation codes and says where they came from
(:mod:`napari_asymseg.store.provenance`); it never writes over painted voxels.
"""
