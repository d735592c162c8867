"""Dock inputs built from the config schema and the loss registry, never from a second list.

A spin box's range and a combo box's items are read from :func:`napari_asymseg.config.rule`,
the same rule :func:`~napari_asymseg.config.check_config` applies, so the dock never offers a
value that training would refuse, and no range is written twice.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from napari_asymseg.config import Config, rule
from napari_asymseg.model.losses import loss_parameters

_INT_MAX = 2**31 - 1  # a QSpinBox holds a C int


def schema_default(section: str, name: str) -> Any:
    """The schema's default value of ``section.name``."""
    return getattr(getattr(Config(), section), name)


def whole_box(section: str, name: str, value: int | None = None) -> QSpinBox:
    """A spin box over the whole-number rule's range, set to ``value`` or the default."""
    want = rule(section, name)
    if want.kind != "whole":
        raise TypeError(f"{section}.{name} is not a whole number: use real_box")
    low, high = want.widget_range()
    box = QSpinBox()
    box.setRange(int(max(low, -_INT_MAX)), int(min(high, _INT_MAX)))
    box.setValue(int(schema_default(section, name) if value is None else value))
    return box


def real_box(section: str, name: str, value: float | None = None, *, step: float) -> QDoubleSpinBox:
    """A spin box over the real-number rule's range, set to ``value`` or the default."""
    want = rule(section, name)
    if want.kind != "real":
        raise TypeError(f"{section}.{name} is not a real number: use whole_box")
    low, high = want.widget_range()
    box = QDoubleSpinBox()
    box.setRange(float(low), float(high))
    box.setSingleStep(step)
    box.setValue(float(schema_default(section, name) if value is None else value))
    return box


def choice_box(section: str, name: str, value: str | None = None) -> QComboBox:
    """A combo box of the rule's choices, set to ``value`` or the default."""
    box = QComboBox()
    box.addItems(list(rule(section, name).choices))
    box.setCurrentText(schema_default(section, name) if value is None else value)
    return box


HIDDEN_PARAMS = {"ignore_index"}


class LossParams(QWidget):
    """Inputs for the parameters of one loss, built from the registry's signatures."""

    def __init__(self) -> None:
        super().__init__()
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.inputs: dict[str, tuple[QWidget, Any]] = {}

    def show_loss(self, name: str) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        self.inputs = {}
        for pname, (kind, default) in loss_parameters(name).items():
            if pname in HIDDEN_PARAMS:
                continue
            widget: QWidget
            if kind is bool:
                widget = QCheckBox()
                widget.setChecked(bool(default))
            elif kind is int:
                widget = QSpinBox()
                widget.setRange(-10_000, 10_000)
                widget.setValue(int(default))
            elif kind is float:
                widget = QDoubleSpinBox()
                widget.setDecimals(3)
                widget.setRange(-10_000.0, 10_000.0)
                widget.setSingleStep(0.1)
                widget.setValue(float(default))
            else:  # lists, mappings, optional values: typed as text ("1,2", "dice+ce")
                widget = QLineEdit("" if default is None else str(default))
                widget.setPlaceholderText("default" if default is None else "")
            self.form.addRow(pname.replace("_", " "), widget)
            self.inputs[pname] = (widget, kind)

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, (widget, _kind) in self.inputs.items():
            if isinstance(widget, QCheckBox):
                out[name] = widget.isChecked()
            elif isinstance(widget, QSpinBox | QDoubleSpinBox):
                out[name] = widget.value()
            elif isinstance(widget, QLineEdit) and widget.text().strip():
                out[name] = widget.text().strip()
        return out

    def set_values(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            widget = self.inputs.get(name, (None, None))[0]
            if isinstance(widget, QSpinBox | QDoubleSpinBox):
                widget.setValue(value)
            elif isinstance(widget, QCheckBox):
                widget.setChecked(bool(value))
            elif isinstance(widget, QLineEdit):
                widget.setText(str(value))
