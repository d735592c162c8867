"""Everything that imports napari, qtpy or magicgui lives in this subpackage."""
