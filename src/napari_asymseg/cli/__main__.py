"""``python -m napari_asymseg.cli``: the ``asymseg`` command (used by torchrun and the tests)."""

import sys

from napari_asymseg.cli.main import main

sys.exit(main())
