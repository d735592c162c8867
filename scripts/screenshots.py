"""Re-make the user guide's screenshots from the real viewer.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py

Each picture is the napari window as a user sees it, driven through the dock's own methods.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "images"


def main() -> int:
    os.environ.setdefault("ASYMSEG_HOME", tempfile.mkdtemp(prefix="asymseg-shots-"))
    import imageio.v3 as iio
    from qtpy.QtWidgets import QApplication

    from napari_asymseg._qt.demo import open_viewer

    DOCS.mkdir(parents=True, exist_ok=True)
    viewer, _dock = open_viewer()
    viewer.window._qt_window.resize(1400, 850)
    for _ in range(30):
        QApplication.processEvents()
    out = DOCS / "viewer-sample.png"
    iio.imwrite(out, viewer.screenshot(canvas_only=False, flash=False))
    print(f"wrote {out}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
