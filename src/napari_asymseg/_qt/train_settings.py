"""The Train section's settings: the loss and its parameters, the regularisers, the run's size.

They sit in a collapsed "Settings" box under the runs: the defaults train a good model, so a
first-time user sees Train, the progress and the curves without scrolling. Every range and
choice comes from the config schema (``forms``), never from a second list.
"""

from __future__ import annotations

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_asymseg._qt.engine import devices, validate_within
from napari_asymseg._qt.forms import LossParams, choice_box, real_box, schema_default, whole_box
from napari_asymseg.config import Config, LossConfig, asym_combined, rule
from napari_asymseg.errors import ScanError
from napari_asymseg.model.losses import LOSSES
from napari_asymseg.train.budget import FLOOR_STEPS


class TrainSettings(QWidget):
    """The loss, its parameters, the regularisers and the run's size."""

    def __init__(self) -> None:
        super().__init__()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        loss_form = QFormLayout()
        self.loss = QComboBox()
        self.loss.addItems(list(LOSSES))
        self.loss.setCurrentText(schema_default("loss", "name"))
        self.loss.setToolTip("the training loss (docs/methods.md); the asymmetric ones counter "
                             "overfitting of the rare lesion class")  # fmt: skip
        loss_form.addRow("loss", self.loss)
        layout.addLayout(loss_form)
        self.params = LossParams()
        self.params.show_loss(self.loss.currentText())
        self.loss.currentTextChanged.connect(self.params.show_loss)
        layout.addWidget(self.params)
        layout.addLayout(self._options_form())

    def _options_form(self) -> QFormLayout:
        """Regularisers and the run's size; ranges and choices come from the config's rules."""
        form = QFormLayout()
        self.adversarial = QCheckBox("asymmetric adversarial training")
        self.mixup = QCheckBox("asymmetric mixup")
        self.sam = choice_box("regularizers", "sam")
        self.smoothing = real_box("regularizers", "label_smoothing", 0.0, step=0.05)
        self.preset = QPushButton("Li et al. asymmetric combination")
        self.preset.setToolTip("asym_focal with margin 1 and gamma 2, adversarial and mixup")
        self.preset.clicked.connect(self.apply_preset)
        self._run_size()
        self.patch = QLineEdit("")
        self.patch.setPlaceholderText("auto")
        self.patch.setToolTip(
            "patch size Z Y X in voxels, e.g. 16 64 64; empty: planned from the spacing (auto)"
        )
        self.batch = whole_box("train", "batch_size")
        self.seed = whole_box("train", "seed")
        self.seed.setToolTip(
            "random seed of the patches and initial weights: another one when a model has not "
            "learned the painted lesion"
        )
        self.unpainted = choice_box("data", "unpainted")
        self.unpainted.setToolTip(
            "what the voxels nobody painted teach: forest (labels of a random forest trained "
            "on the painted voxels), shape (the forest's, and the lesion filled between two "
            "painted slices), background, or ignore (docs/training.md)"
        )
        self.estimate_box = QCheckBox("also cross-validate (2-3 more trainings)")
        self.estimate_box.setChecked(bool(schema_default("train", "estimate")))
        self.estimate_box.setToolTip(
            "after training and the quality figure, also cross-validate over the painted "
            "slices (one more training per run of lesion slices; it errs low, "
            "docs/training.md) and show it under the curves"
        )
        self.device = QComboBox()
        self.device.addItems(devices())
        form.addRow(self.adversarial)
        form.addRow(self.mixup)
        form.addRow("SAM", self.sam)
        form.addRow("label smoothing", self.smoothing)
        form.addRow(self.preset)
        for label, widget in (
            ("steps", self.steps),
            ("or minutes", self.minutes),
            ("patch", self.patch),
            ("batch", self.batch),
            ("seed", self.seed),
            ("unpainted voxels", self.unpainted),
            ("device", self.device),
        ):
            form.addRow(label, widget)
        form.addRow(self.estimate_box)
        return form

    def _run_size(self) -> None:
        """The steps box ("planned" at 0) and the minutes box, enabled for a planned run."""
        self.steps = whole_box("train", "steps")
        self.steps.setSpecialValueText("planned")  # 0: planned from the minutes
        self.steps.setToolTip(
            "optimizer steps; planned (0): at least 360, and as many more as this computer "
            "trains within the minutes below"
        )
        self.minutes = real_box("train", "minutes", step=0.5)
        self.minutes.setToolTip(
            "the time budget of a planned run: it times its first steps, then trains as many "
            "as end within these minutes on this computer (360 to 1080 steps)"
        )
        self.steps.valueChanged.connect(lambda n: self.minutes.setEnabled(n == 0))

    def run_size(self) -> str:
        """What the Train button says of the run: its budget, or its steps."""
        steps, minutes = self.steps.value(), self.minutes.value()
        if steps:
            return f"{steps} steps"
        return f"about {minutes:g} min" if minutes else f"{FLOOR_STEPS} steps"

    def apply_preset(self) -> None:
        cfg = asym_combined()
        self.loss.setCurrentText(cfg.loss.name)
        self.params.set_values(cfg.loss.params)
        self.adversarial.setChecked(True)
        self.mixup.setChecked(True)

    def config(self, classes: int) -> Config:
        """The configuration the widgets describe, for a scan of ``classes`` foreground
        classes; checked against the schema's rules."""
        cfg = Config()
        cfg.loss = LossConfig(self.loss.currentText(), self.params.values())
        cfg.regularizers.adversarial = self.adversarial.isChecked()
        cfg.regularizers.mixup = self.mixup.isChecked()
        cfg.regularizers.sam = self.sam.currentText()
        eps = self.smoothing.value()
        if eps > 0 and classes:
            cfg.regularizers.label_smoothing = (0.0,) + (eps,) * classes
        cfg.data.patch_size = self.patch_size()
        cfg.train.steps = self.steps.value()
        cfg.train.minutes = self.minutes.value()
        cfg.train.batch_size = self.batch.value()
        cfg.train.seed = self.seed.value()
        cfg.data.unpainted = self.unpainted.currentText()
        cfg.train.estimate = self.estimate_box.isChecked()
        cfg.train.device = self.device.currentText()
        validate_within(cfg)
        return cfg

    def patch_size(self) -> tuple[int, int, int] | None:
        """The patch typed by the user (three whole numbers the schema allows); None: auto."""
        text = self.patch.text().replace(",", " ").replace("x", " ").split()
        if not text:
            return None
        want = rule("data", "patch_size")
        try:
            values = tuple(int(v) for v in text)
        except ValueError:
            values = ()
        if not want.accepts(values):
            raise ScanError(
                f"patch must be three positive integers Z Y X, each at least {want.low:g}, "
                f"got {self.patch.text()!r}"
            )
        return values[0], values[1], values[2]
