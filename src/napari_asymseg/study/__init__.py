"""Studies: a folder of many scans that one model learns from (:mod:`.study`).

Kept empty on purpose: :mod:`napari_asymseg.train.runs` imports :mod:`.study`, so importing
this package must not pull in anything else.
"""
