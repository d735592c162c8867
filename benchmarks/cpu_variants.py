"""What speeds up a training step on this CPU, and on the same CPU restricted to AVX2.

    .venv/bin/python benchmarks/cpu_variants.py                 # both ISAs, every variant
    .venv/bin/python benchmarks/cpu_variants.py --isa native --variants eager bf16

Issue 22: the developers' CPUs differ (one had AVX-512 with bf16, another only AVX2), and what
helps on one may not help on the other. Without an AVX2-only machine at hand, the "avx2" rows
run on this machine with the vector instructions torch may use limited to AVX2
(``ATEN_CPU_CAPABILITY=avx2`` for ATen's kernels, ``ONEDNN_MAX_CPU_ISA=AVX2`` for oneDNN's
convolutions and matmuls): the same cores, caches and memory, without AVX-512 and without
its bf16 instructions, as on an AVX2-only CPU. A proxy, named as such in every table: an
AVX2-only processor of another generation has other caches and clocks.

Each (ISA, variant) runs in a fresh process (the ISA is fixed when torch loads; a compiled
graph must not be reused across variants) and times the engine's training step on the
default network (``Config()``: DynUNet 16-32-64-128, loss ``asym_focal``, AdamW) for a batch
of 2 patches: forward, loss, backward and optimizer step, after ``--warmup`` steps; the
median of ``--steps`` steps. Variants:

* ``eager``: fp32, all cores: what the engine does on a CPU without bf16 (``amp auto``).
* ``bf16``: bf16 autocast, what the engine does on a CPU with native bf16.
* ``threads1``: fp32 on one thread (two processes side by side would each get one core).
* ``channels_last``: fp32 with the model and input in ``torch.channels_last_3d``.
* ``compile``: fp32 with ``torch.compile(model)`` (inductor); its first step, which compiles,
  is reported apart (``first s``): a 1.5-minute run pays it once.
* ``patch64``: fp32 eager on a 64³ patch instead of the CPU plan's 40³ (the work per step the
  GPU plan chose before issue 22), to show what a larger patch costs per step.

Prints a table and writes ``benchmarks/results/cpu_variants.json`` (machine, every number).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, table, write_json  # noqa: E402

VARIANTS = ("eager", "bf16", "threads1", "channels_last", "compile", "patch64")
ISAS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--isa", nargs="+", choices=tuple(ISAS), default=tuple(ISAS))
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=VARIANTS)
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    p.add_argument("--out", default="benchmarks/results/cpu_variants.json")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- one variant
def measure(variant: str, steps: int, warmup: int) -> dict[str, Any]:
    """Seconds per training step of ``variant`` in this process."""
    import torch

    from napari_asymseg.config import Config
    from napari_asymseg.model.losses import build_loss
    from napari_asymseg.model.networks import build_model, plan_network

    cfg = Config()
    torch.manual_seed(0)
    if variant == "threads1":
        torch.set_num_threads(1)
    edge = 64 if variant == "patch64" else None
    # the CPU plan of a 1 mm isotropic scan (2**16 voxels at most: 40³), or a 64³ patch
    plan = plan_network(
        (1.0, 1.0, 1.0),
        (160, 160, 160),
        len(cfg.model.filters),
        (edge,) * 3 if edge else None,
        max_voxels=2**16,
    )
    model = build_model(cfg.model, plan, out_channels=2)
    loss_fn = build_loss(cfg.loss.name, **cfg.loss.params)
    x = torch.randn(2, 1, *plan.patch_size)
    y = (torch.rand(2, *plan.patch_size) < 0.02).long()
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    forward = torch.compile(model) if variant == "compile" else model
    dtype = torch.bfloat16 if variant == "bf16" else None

    def step() -> float:
        t = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn(forward(x).float(), y)
        loss.backward()
        optimizer.step()
        float(loss.detach())
        return time.perf_counter() - t

    first = step()
    for _ in range(warmup - 1):
        step()
    times = [step() for _ in range(steps)]
    return {
        "variant": variant,
        "patch": list(plan.patch_size),
        "threads": torch.get_num_threads(),
        "first_s": first,
        "s_per_step": statistics.median(times),
        "spread": [min(times), max(times)],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def run_child(isa: str, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """``variant`` in a fresh process with ``isa``'s environment."""
    env = {**os.environ, **ISAS[isa]}
    cmd = [sys.executable, __file__, "--child", variant]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        return {"variant": variant, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.warmup)))
        return 0
    results: dict[str, list[dict[str, Any]]] = {}
    for isa in args.isa:
        results[isa] = []
        for variant in args.variants:
            row = run_child(isa, variant, args)
            print(isa, json.dumps(row), flush=True)
            results[isa].append(row)
    rows = []
    for isa, found in results.items():
        eager = [r for r in found if r["variant"] == "eager" and "error" not in r]
        base = eager[0]["s_per_step"] if eager else None
        for r in found:
            if "error" in r:
                rows.append([isa, r["variant"], "failed", "", "", "", str(r["error"])])
                continue
            ratio = f"{base / r['s_per_step']:.2f}x" if base else ""
            rows.append(
                [
                    isa,
                    r["variant"],
                    "x".join(map(str, r["patch"])),
                    str(r["threads"]),
                    f"{r['s_per_step']:.3f}",
                    ratio,
                    f"{r['first_s']:.1f}",
                ]
            )
    heads = ["ISA", "variant", "patch", "threads", "s/step", "speed vs eager", "first s"]
    print(table(heads, rows))
    write_json(args.out, {"machine": machine(), "args": vars(args), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
