"""napari-asymseg: annotate 3D scans and train segmentation models on rare foreground classes.

This module is the Qt-free API. It must never import napari, qtpy or magicgui: the engine, the
command line and the benchmarks use it on machines without a display.
"""

from napari_asymseg.errors import ScanError
from napari_asymseg.store.scan import Scan

__version__ = "0.1.0"

__all__ = ["Scan", "ScanError", "__version__"]
