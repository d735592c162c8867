"""Files in and out: importers (NIfTI, NRRD, MHA, TIFF, OME-Zarr -> scan), mask exporters, and
napari's reader and writer hooks."""
