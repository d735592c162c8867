"""Training on several GPUs (or CPU processes) launched by ``torchrun``: one process per rank.

``torchrun --standalone --nproc_per_node N -m napari_asymseg.cli train ...`` starts N copies
of the command with ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in their environment;
:func:`session` turns that into an initialised process group and the device of this rank,
and :func:`napari_asymseg.train.loop.fit` wraps the network in ``DistributedDataParallel``.
Outside torchrun (or with one process) :func:`session` yields ``None`` and nothing changes.

Qt-free and cheap to import; torch is imported by the functions that need it.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from napari_asymseg.errors import ClearError

if TYPE_CHECKING:
    import torch

BACKEND_ENV = "ASYMSEG_DIST_BACKEND"
"""Environment variable that overrides the backend (``nccl`` on CUDA, ``gloo`` on the CPU)."""


class DistributedError(ClearError, RuntimeError):
    """A multi-process launch that cannot work as given; the message names the fix."""


@dataclass(frozen=True)
class Launch:
    """What torchrun told this process."""

    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launch_from_env(environ: Mapping[str, str] | None = None) -> Launch | None:
    """This process's place in a torchrun launch of several processes; ``None`` otherwise.

    ``WORLD_SIZE`` unset, empty or 1 is a plain single-process run.
    """
    env = os.environ if environ is None else environ
    world = _env_int(env, "WORLD_SIZE", None)
    if world is None or world <= 1:
        return None
    rank = _env_int(env, "RANK", None)
    local_rank = _env_int(env, "LOCAL_RANK", rank)
    if rank is None or local_rank is None or not 0 <= rank < world or local_rank < 0:
        raise DistributedError(
            f"WORLD_SIZE is {world} but RANK is {env.get('RANK')!r}: start several processes "
            "with torchrun (it sets RANK and LOCAL_RANK), or unset WORLD_SIZE for one"
        )
    return Launch(rank=rank, local_rank=local_rank, world_size=world)


def _env_int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise DistributedError(
            f"{name}={text!r} is not a whole number: launch with torchrun, which sets it"
        ) from None


def rank_device(launch: Launch, device_name: str = "auto") -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for ``auto`` (with CUDA) and ``cuda``,
    else the CPU. One GPU per process, so ``cuda:N`` and ``mps`` are refused."""
    import torch

    cuda = torch.cuda.is_available()
    if device_name == "cpu" or (device_name == "auto" and not cuda):
        return torch.device("cpu")
    if device_name not in ("auto", "cuda") and not (
        device_name == "mps" or device_name.startswith("cuda:")
    ):
        raise DistributedError(f"unknown device {device_name!r}: use auto, cuda or cpu")
    if device_name not in ("auto", "cuda"):
        raise DistributedError(
            f"device {device_name!r} cannot be shared by {launch.world_size} torchrun "
            "processes: use --device cuda (each process takes the GPU of its LOCAL_RANK) "
            "or --device cpu"
        )
    if not cuda:
        raise DistributedError("--device cuda asked for, but CUDA is not available: use cpu")
    count = torch.cuda.device_count()
    if launch.local_rank >= count:
        raise DistributedError(
            f"torchrun started process {launch.local_rank + 1} on this machine but it has "
            f"{count} GPU(s): use --nproc_per_node {count} or fewer"
        )
    return torch.device("cuda", launch.local_rank)


def backend_for(device: torch.device, environ: Mapping[str, str] | None = None) -> str:
    """``nccl`` for CUDA, ``gloo`` for the CPU, or what ``ASYMSEG_DIST_BACKEND`` says."""
    env = os.environ if environ is None else environ
    forced = env.get(BACKEND_ENV, "").strip().lower()
    if forced:
        if forced == "nccl" and device.type != "cuda":
            raise DistributedError(
                f"{BACKEND_ENV}=nccl needs CUDA GPUs but this run is on the {device.type}: "
                "use gloo or unset it"
            )
        return forced
    return "nccl" if device.type == "cuda" else "gloo"


@dataclass
class Group:
    """An initialised process group and this rank's device; the collectives ``fit`` needs."""

    launch: Launch
    device: torch.device
    backend: str

    @property
    def rank(self) -> int:
        return self.launch.rank

    @property
    def world_size(self) -> int:
        return self.launch.world_size

    @property
    def is_main(self) -> bool:
        return self.launch.is_main

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` in DistributedDataParallel; its constructor copies rank 0's weights to
        every rank, so all ranks start from the same state."""
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)

    def barrier(self) -> None:
        import torch.distributed as dist

        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks (NaN anywhere gives NaN everywhere)."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def most(self, value: float) -> float:
        """The largest ``value`` over the ranks."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def agree(self, model: torch.nn.Module, value: float) -> float:
        """Rank 0's ``value`` on every rank, after checking that all ranks hold the same
        weights (DDP keeps them identical; a difference is a bug, not a tolerance).

        Every rank validates the same model on the same voxels, so their scores match; taking
        rank 0's makes "best" and early stopping the same decision on every rank regardless.
        """
        import torch
        import torch.distributed as dist

        with torch.no_grad():
            checksum = sum(
                (p.detach().double().sum() for p in model.parameters()),
                torch.zeros((), dtype=torch.float64, device=self.device),
            )
            score = torch.tensor(value, dtype=torch.float64, device=self.device)
            mine = torch.stack([checksum, score])
        gathered = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(gathered, mine)
        sums = [float(g[0]) for g in gathered]
        if not all(math.isclose(s, sums[0], rel_tol=1e-9, abs_tol=1e-9) for s in sums):
            raise DistributedError(
                f"the weights of the {self.world_size} processes differ (checksums "
                f"{sums[0]:.9g} vs {max(sums, key=lambda s: abs(s - sums[0])):.9g}): "
                "train in one process and report this"
            )
        return float(gathered[0][1])


@contextlib.contextmanager
def session(device_name: str = "auto") -> Iterator[Group | None]:
    """The process group of a torchrun launch for the duration of the block; ``None`` (and
    nothing done) in a single process.

    A group that is already initialised (by the caller's own script) is used and left open;
    one made here is destroyed at the end.
    """
    launch = launch_from_env()
    if launch is None:
        yield None
        return
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        raise DistributedError(
            "this torch build has no torch.distributed: install a torch with it, or train "
            "in one process (without torchrun)"
        )
    device = rank_device(launch, device_name)
    owned = not dist.is_initialized()
    if owned:
        backend = backend_for(device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        try:
            dist.init_process_group(backend=backend)
        except (RuntimeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise DistributedError(
                f"cannot start the {backend} process group ({first}): launch with torchrun, "
                f"or set {BACKEND_ENV} to a backend this machine has"
            ) from None
    else:
        backend = str(dist.get_backend())
    try:
        yield Group(launch, device, backend)
    finally:
        if owned and dist.is_initialized():
            # a DistributedDataParallel still alive when its group goes can abort the process
            # at exit with gloo ("terminate called without an active exception", 3 runs in 25)
            gc.collect()
            dist.destroy_process_group()
