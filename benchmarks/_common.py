"""Shared helpers of the benchmarks (bookkeeping, driving the engine, Pillow figures).

Training and prediction go through the engine exactly as the CLI drives it; the figures are
drawn with Pillow (a napari dependency), since matplotlib is not among the project's
dependencies.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_asymseg.config import Config
from napari_asymseg.store.scan import Scan

# ----------------------------------------------------------------------------- bookkeeping


def cpu_model() -> dict[str, Any]:
    """The CPU's model name and whether it computes bf16 natively (Linux; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = dict(
        (k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in text.splitlines()) if v
    )
    flags = set(fields.get("flags", "").split())
    return {
        "cpu": fields.get("model name", "unknown"),
        "cpu_bf16": bool(flags & {"avx512_bf16", "amx_bf16"}),
        # a VM's model name can be generic ("Intel(R) Xeon(R) Processor"): the vector and
        # matrix extensions say which kernels torch can use
        "cpu_isa": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
    }


def machine() -> dict[str, Any]:
    """The machine, software and command line of a run (for the JSON)."""
    import monai
    import torch

    return {
        **cpu_model(),
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def finite(value: Any) -> Any:
    """JSON-safe numbers, 5 significant digits: NaN and infinities become None."""
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return float(f"{value:.5g}") if math.isfinite(value) else None  # 5 digits suffice
    return value


def write_json(
    path: str | os.PathLike, data: dict[str, Any], *, compact: Sequence[str] = ()
) -> None:
    """Indented JSON; the lists named in ``compact`` get one compact line per element (the
    bulky per-volume or per-seed records)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = finite(data)
    marks = {key: f"@@{key}@@" for key in compact if key in data}
    text = json.dumps({k: marks.get(k, v) for k, v in data.items()}, indent=1)
    for key, mark in marks.items():
        lines = ",\n  ".join(json.dumps(item, separators=(",", ":")) for item in data[key])
        text = text.replace(json.dumps(mark), f"[\n  {lines}\n ]")
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text + "\n")
    json.loads(tmp.read_text())  # never leave a broken file
    os.replace(tmp, path)


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def fmt(mean: float, std: float, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (also readable on a terminal)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- engine


def run_fit(
    scan: Scan,
    cfg: Config,
    model_dir: str | os.PathLike,
    *,
    init: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train (or fine-tune from ``init``) to the end; a summary of the run."""
    from napari_asymseg.train.events import EpochEnd, Finished
    from napari_asymseg.train.loop import fit

    t0 = time.perf_counter()
    vals: list[float] = []
    done: Finished | None = None
    for event in fit(scan, cfg, model_dir, init=init, overwrite=overwrite):
        if isinstance(event, EpochEnd):
            vals.append(event.dsc)
        elif isinstance(event, Finished):
            done = event
    assert done is not None
    summary = {
        "seconds": time.perf_counter() - t0,
        "steps": done.steps_done,
        "best_step": done.best_step,
        "best_val_dsc": done.best_dsc,
        "val_dsc": vals,
    }
    if log:
        log(
            f"  trained {model_dir} in {summary['seconds']:.0f} s, val DSC "
            + " ".join(f"{v:.2f}" for v in vals)
        )
    return summary


def cached_fit(
    scan: Scan,
    cfg: Config,
    model_dir: str | os.PathLike,
    *,
    init: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """:func:`run_fit`, unless ``model_dir`` already holds a finished run (resumable work)."""
    marker = Path(model_dir) / "run.json"
    if marker.is_file() and (Path(model_dir) / "best.pt").is_file():
        return json.loads(marker.read_text())
    # an unfinished run there (killed before its marker) is redone from scratch
    summary = run_fit(scan, cfg, model_dir, init=init, log=log, overwrite=True)
    write_json(marker, summary)
    return summary


def logits_of(
    model_dir: str | os.PathLike,
    image: np.ndarray,
    *,
    tta: bool,
    stats: tuple[float, float] | None = None,
) -> tuple[Any, Any]:
    """Sliding-window logits ``[C, *S]`` of a volume as ``predict()`` computes them, and the
    flip spread of the foreground margin (None without flips)."""
    import torch

    from napari_asymseg.model.checkpoint import model_from_checkpoint
    from napari_asymseg.model.load import load_checkpoint
    from napari_asymseg.train.data import intensity_stats, normalise
    from napari_asymseg.train.device import autocast_dtype, select_device
    from napari_asymseg.train.validate import volume_logits

    ckpt = load_checkpoint(model_dir)
    net, cfg, plan = model_from_checkpoint(ckpt)
    cfg.predict.tta = tta
    device = select_device(cfg.train.device)
    net.to(device)
    x = normalise(image, cfg.data, stats=stats or intensity_stats(image))
    spread: list[torch.Tensor] = []
    logits = volume_logits(
        net, x, plan, cfg, device, autocast_dtype(device, cfg.train.amp), spread=spread
    )
    return logits[0], (spread[0] if spread else None)


# ----------------------------------------------------------------------------- figures
# A small plotting kit on Pillow: line panels with shaded spread and grouped bar panels.

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#7f7f7f"]


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _tick_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.0f}k"
    if abs(v) >= 1000:
        return f"{v / 1e3:g}k"
    return f"{v:.3g}"


class Figure:
    """A white canvas holding panels; :meth:`save` writes a PNG."""

    def __init__(self, width: int, height: int, title: str = "") -> None:
        from PIL import Image, ImageDraw, ImageFont

        self.image = Image.new("RGB", (width, height), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.font = ImageFont.load_default(size=13)
        self.small = ImageFont.load_default(size=11)
        self.big = ImageFont.load_default(size=16)
        if title:
            self.text((width // 2, 8), title, self.big, anchor="ma")

    def text(self, xy: tuple[float, float], s: str, font: Any = None, **kw: Any) -> None:
        self.draw.text(xy, s, fill=kw.pop("fill", "black"), font=font or self.font, **kw)

    def panel(self, box: tuple[int, int, int, int], **kw: Any) -> Panel:
        return Panel(self, box, **kw)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.image.save(path, optimize=True)


class Panel:
    """Axes inside ``box`` (left, top, right, bottom pixels of the whole panel)."""

    def __init__(
        self,
        fig: Figure,
        box: tuple[int, int, int, int],
        *,
        xlim: tuple[float, float] = (0.0, 1.0),
        ylim: tuple[float, float] = (0.0, 1.0),
        title: str = "",
        xlabel: str = "",
        ylabel: str = "",
        xticks: Sequence[float] | None = None,
        xticklabels: Sequence[str] | None = None,
        ylog: bool = False,
    ) -> None:
        self.fig, self.draw = fig, fig.draw
        left, top, right, bottom = box
        self.x0, self.y0, self.x1, self.y1 = left + 58, top + 26, right - 10, bottom - 44
        self.xlim, self.ylim, self.ylog = xlim, ylim, ylog
        d = self.draw
        fig.text(((left + right) // 2, top + 4), title, anchor="ma")
        fig.text(((self.x0 + self.x1) // 2, bottom - 4), xlabel, anchor="md")
        # the y label, drawn sideways
        from PIL import Image, ImageDraw

        w = int(d.textlength(ylabel, font=fig.font)) + 4
        label = Image.new("RGB", (max(w, 1), 16), "white")
        ImageDraw.Draw(label).text((2, 0), ylabel, fill="black", font=fig.font)
        label = label.rotate(90, expand=True)
        fig.image.paste(label, (left + 2, (self.y0 + self.y1) // 2 - label.height // 2))
        if ylog:
            lo, hi = math.floor(math.log10(ylim[0])), math.ceil(math.log10(ylim[1]))
            yticks = [10.0**e for e in range(lo, hi + 1) if ylim[0] <= 10.0**e <= ylim[1]]
        else:
            yticks = _nice_ticks(*ylim)
        for v in yticks:
            y = self.py(v)
            d.line([(self.x0, y), (self.x1, y)], fill="#e6e6e6")
            fig.text((self.x0 - 4, y), _tick_label(v), fig.small, anchor="rm")
        if xticks is None:
            xticks = _nice_ticks(*xlim)
        for i, v in enumerate(xticks):
            x = self.px(v)
            d.line([(x, self.y1), (x, self.y1 + 4)], fill="black")
            text = xticklabels[i] if xticklabels is not None else _tick_label(v)
            fig.text((x, self.y1 + 6), text, fig.small, anchor="ma")
        d.rectangle([self.x0, self.y0, self.x1, self.y1], outline="black")

    def px(self, v: float) -> float:
        a, b = self.xlim
        return self.x0 + (v - a) / (b - a) * (self.x1 - self.x0)

    def py(self, v: float) -> float:
        a, b = self.ylim
        if self.ylog:
            v, a, b = (math.log10(max(t, 1e-12)) for t in (v, a, b))
        v = min(max(v, a), b)
        return self.y1 - (v - a) / (b - a) * (self.y1 - self.y0)

    def line(
        self,
        xs: Sequence[float],
        ys: Sequence[float],
        color: str,
        *,
        lo: Sequence[float] | None = None,
        hi: Sequence[float] | None = None,
        width: int = 2,
        marker: bool = True,
        dash: bool = False,
    ) -> None:
        """A polyline with markers, and a translucent band between ``lo`` and ``hi``."""
        from PIL import Image, ImageColor, ImageDraw

        pts = [(self.px(x), self.py(y)) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
        if lo is not None and hi is not None:
            band = [(self.px(x), self.py(y)) for x, y in zip(xs, hi, strict=True)]
            band += [(self.px(x), self.py(y)) for x, y in zip(xs[::-1], lo[::-1], strict=True)]
            layer = Image.new("RGBA", self.fig.image.size, (0, 0, 0, 0))
            ImageDraw.Draw(layer).polygon(band, fill=(*ImageColor.getrgb(color), 45))
            self.fig.image.paste(layer, (0, 0), layer)
            self.draw = self.fig.draw = ImageDraw.Draw(self.fig.image)
        if len(pts) > 1 and not dash:
            self.draw.line(pts, fill=color, width=width, joint="curve")
        for (xa, ya), (xb, yb) in zip(pts[:-1], pts[1:], strict=True) if dash else ():
            n = max(1, int(math.hypot(xb - xa, yb - ya) / 12))
            for i in range(n):  # 8 px on, 4 px off
                t0, t1 = i / n, (i + 0.67) / n
                seg = [(xa + t * (xb - xa), ya + t * (yb - ya)) for t in (t0, t1)]
                self.draw.line(seg, fill=color, width=width)
        if marker:
            for x, y in pts:
                self.draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)

    def hline(self, y: float, color: str = "#555555") -> None:
        yy = self.py(y)
        x = self.x0
        while x < self.x1:
            self.draw.line([(x, yy), (min(x + 6, self.x1), yy)], fill=color, width=1)
            x += 10

    def bars(
        self,
        groups: Sequence[str],
        series: Sequence[tuple[str, Sequence[float], Sequence[float], str]],
    ) -> None:
        """Grouped bars: ``series`` = (label, values per group, errors per group, colour)."""
        n, k = len(groups), len(series)
        gw = (self.x1 - self.x0) / n
        bw = gw * 0.8 / k
        for g, name in enumerate(groups):
            gx = self.x0 + g * gw + gw * 0.1
            self.fig.text(
                (self.x0 + (g + 0.5) * gw, self.y1 + 6), name, self.fig.small, anchor="ma"
            )
            for s, (_, values, errors, color) in enumerate(series):
                v, e = values[g], errors[g]
                if not math.isfinite(v):
                    continue
                xa, xb = gx + s * bw + 1, gx + (s + 1) * bw - 1
                self.draw.rectangle([xa, self.py(v), xb, self.py(self.ylim[0])], fill=color)
                if math.isfinite(e) and e > 0:
                    xm = (xa + xb) / 2
                    self.draw.line([(xm, self.py(v - e)), (xm, self.py(v + e))], fill="black")
                    self.draw.line([(xm - 3, self.py(v + e)), (xm + 3, self.py(v + e))], "black")
                    self.draw.line([(xm - 3, self.py(v - e)), (xm + 3, self.py(v - e))], "black")

    def legend(self, items: Sequence[tuple[str, str]], corner: str = "lr") -> None:
        """Coloured labels in a corner: ``lr`` lower right, ``ul`` upper left, ..."""
        font = self.fig.small
        w = max(int(self.draw.textlength(s, font=font)) for s, _ in items) + 26
        h = 15 * len(items) + 6
        x = self.x1 - w - 6 if corner[1] == "r" else self.x0 + 6
        y = self.y1 - h - 6 if corner[0] == "l" else self.y0 + 6
        self.draw.rectangle([x, y, x + w, y + h], fill="white", outline="#999999")
        for i, (label, color) in enumerate(items):
            yy = y + 4 + 15 * i
            self.draw.rectangle([x + 5, yy + 3, x + 17, yy + 10], fill=color)
            self.fig.text((x + 22, yy), label, font)


def timed_log() -> Callable[[str], None]:
    """A ``log(msg)`` that prefixes the seconds since it was made."""
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    return log
