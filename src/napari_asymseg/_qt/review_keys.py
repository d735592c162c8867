"""The Review section's keys: A lesion, R not lesion, N / Shift+N next / previous, U undo.

They work wherever the user's focus is while reviewing: on the canvas (napari's key bindings,
which only see keys while the canvas has the focus) and in the Review section itself, e.g. the
review list after an item was clicked (Qt shortcuts limited to the section and its children,
so that the keys mean nothing elsewhere in the dock, and typing in its spin box still types).
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import Qt
from qtpy.QtGui import QKeySequence
from qtpy.QtWidgets import QShortcut, QWidget

KEYS = {"accept": "a", "reject": "r", "next": "n", "previous": "Shift-N", "undo": "u"}
"""The viewer's shortcuts (none is taken by napari's labels layer)."""
SECTION_KEYS = {"accept": "A", "reject": "R", "next": "N", "previous": "Shift+N", "undo": "U"}
"""The same keys, as Qt names them, for the section's own shortcuts."""
KEYS_LINE = "Keys: A lesion · R not lesion · N / Shift+N next / previous item · U undo answer"


def bind_keys(viewer, section: QWidget, actions: dict[str, Callable[[], None]]) -> list[QShortcut]:
    """Bind each action of ``actions`` (named as in :data:`KEYS`) to its key on the viewer's
    canvas and inside ``section``; returns the section's shortcuts."""
    for name, key in KEYS.items():
        act = actions[name]
        viewer.bind_key(key, lambda _viewer, act=act: act(), overwrite=True)
    shortcuts = []
    for name, key in SECTION_KEYS.items():
        shortcut = QShortcut(QKeySequence(key), section)
        shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        shortcut.activated.connect(actions[name])
        shortcuts.append(shortcut)
    return shortcuts
