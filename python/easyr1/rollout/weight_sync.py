"""Weight sync actor → engines: bucketed broadcasts over a process group of its own.

The group spans the actor's rank 0 (rank 0 of the group) and every engine process (ranks 1…N; a vLLM engine with
tensor parallelism contributes one rank per TP worker). It is built from plain ``torch.distributed`` objects — a
``TCPStore`` hosted by the actor's rank 0 and a ``ProcessGroupGloo``/``ProcessGroupNCCL`` on top of it — so it
lives beside the actor's own FSDP world (and beside vLLM's groups) without touching the default process group.

Protocol, per sync:

1. the sender publishes a :class:`WeightPlan` once (names, shapes, dtypes, buckets); receivers keep it;
2. for each bucket the sender concatenates the full tensors (cast to the engines' dtype) into one flat buffer and
   broadcasts it; receivers allocate the same buffer, receive, and split it back into named tensors.

Bucket size bounds the extra memory on both sides (``worker.rollout.weight_sync_bucket_mb``).
"""

from __future__ import annotations

import datetime
import logging
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)

_DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,
    "int64": torch.int64,
    "int32": torch.int32,
    "uint8": torch.uint8,
    "bool": torch.bool,
}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def dtype_from_name(name: str) -> torch.dtype:
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"unsupported dtype {name!r} in a weight plan") from None


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str
    """dtype on the wire (the engines' dtype for floating tensors)."""

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * torch.empty((), dtype=dtype_from_name(self.dtype)).element_size()


@dataclass(frozen=True)
class WeightPlan:
    """What is sent and in which buckets: ``buckets`` are lists of indices into ``tensors`` (one dtype per bucket)."""

    tensors: tuple[TensorSpec, ...]
    buckets: tuple[tuple[int, ...], ...]

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def to_wire(self) -> dict[str, list[Any]]:
        """The plan as plain lists (``{"tensors": [[name, shape, dtype], …], "buckets": [[index, …], …]}``).

        vLLM's ``collective_rpc`` msgpack-encodes its arguments and decodes them untyped, so a dataclass would
        reach the workers as a dict; they rebuild the plan with :meth:`from_wire`."""
        return {
            "tensors": [[t.name, list(t.shape), t.dtype] for t in self.tensors],
            "buckets": [list(b) for b in self.buckets],
        }

    @classmethod
    def from_wire(cls, wire: WeightPlan | Mapping[str, Any]) -> WeightPlan:
        """Rebuild (and check) a plan from :meth:`to_wire`'s output; a ``WeightPlan`` is returned as it is."""
        if isinstance(wire, WeightPlan):
            return wire
        try:
            tensors = tuple(
                TensorSpec(str(name), tuple(int(s) for s in shape), str(dtype))
                for name, shape, dtype in wire["tensors"]
            )
            buckets = tuple(tuple(int(i) for i in bucket) for bucket in wire["buckets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed weight plan on the wire: {type(exc).__name__}: {exc}") from exc
        indices = sorted(i for bucket in buckets for i in bucket)
        if indices != list(range(len(tensors))):
            raise ValueError(f"weight plan buckets do not cover its {len(tensors)} tensors exactly once")
        for spec in tensors:
            dtype_from_name(spec.dtype)
        return cls(tensors, buckets)


def make_plan(specs: Iterable[TensorSpec], bucket_bytes: int) -> WeightPlan:
    """Group consecutive tensors of the same dtype into buckets of at most ``bucket_bytes`` (a tensor larger than a
    bucket travels alone)."""
    tensors = tuple(specs)
    buckets: list[tuple[int, ...]] = []
    current: list[int] = []
    size = 0
    for i, spec in enumerate(tensors):
        same_dtype = not current or tensors[current[0]].dtype == spec.dtype
        if current and (not same_dtype or size + spec.nbytes > bucket_bytes):
            buckets.append(tuple(current))
            current, size = [], 0
        current.append(i)
        size += spec.nbytes
    if current:
        buckets.append(tuple(current))
    return WeightPlan(tensors, tuple(buckets))


def wire_dtype(tensor_dtype: torch.dtype, engine_dtype: torch.dtype) -> torch.dtype:
    """Floating tensors travel in the engines' dtype; others as they are."""
    return engine_dtype if tensor_dtype.is_floating_point else tensor_dtype


def pack_bucket(tensors: list[torch.Tensor], dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).to(device=device, dtype=dtype) for t in tensors])


def unpack_bucket(flat: torch.Tensor, specs: list[TensorSpec]) -> list[tuple[str, torch.Tensor]]:
    out, offset = [], 0
    for spec in specs:
        out.append((spec.name, flat[offset : offset + spec.numel].view(spec.shape)))
        offset += spec.numel
    if offset != flat.numel():
        raise ValueError(f"bucket holds {flat.numel()} elements but its specs need {offset}")
    return out


def serialize_state(state: Mapping[str, torch.Tensor], dtype: torch.dtype, bucket_bytes: int) -> Iterator[bytes]:
    """The object-store fallback's wire format: ``state`` as safetensors blobs of about ``bucket_bytes`` each
    (floating tensors cast to ``dtype``). Plain bytes survive any RPC layer (vLLM's msgpack + multiprocessing
    cannot carry tensors); one bucket is materialised at a time."""
    from safetensors.torch import save

    specs = [TensorSpec(name, tuple(t.shape), dtype_name(wire_dtype(t.dtype, dtype))) for name, t in state.items()]
    plan = make_plan(specs, bucket_bytes)
    for bucket in plan.buckets:
        chunk = {}
        for i in bucket:
            spec = plan.tensors[i]
            chunk[spec.name] = state[spec.name].detach().to(device="cpu", dtype=dtype_from_name(spec.dtype), copy=True)
        yield save(chunk)


def deserialize_state(blob: bytes) -> list[tuple[str, torch.Tensor]]:
    """Named tensors of one :func:`serialize_state` blob, in their stored order."""
    from safetensors.torch import load

    return list(load(blob).items())


def local_host() -> str:
    """An address other processes (other nodes too) can reach this process at."""
    try:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    except Exception:
        pass
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


class WeightSyncGroup:
    """A standalone process group for the weight broadcast (rank 0 = sender)."""

    def __init__(
        self,
        pg: torch.distributed.ProcessGroup,
        store: torch.distributed.Store,
        rank: int,
        world_size: int,
        device: torch.device,
    ):
        self.pg = pg
        self.store = store
        self.rank = rank
        self.world_size = world_size
        self.device = device

    @staticmethod
    def start_server(host: str | None = None, timeout_s: float = 600.0) -> tuple[torch.distributed.TCPStore, str, int]:
        """Rank 0: host the rendezvous store on a free port; returns ``(store, host, port)``."""
        host = host or local_host()
        store = torch.distributed.TCPStore(
            "0.0.0.0" if host != "127.0.0.1" else host,
            0,
            is_master=True,
            timeout=datetime.timedelta(seconds=timeout_s),
            wait_for_workers=False,
        )
        return store, host, store.port

    @classmethod
    def join(
        cls,
        host: str,
        port: int,
        rank: int,
        world_size: int,
        backend: str,
        *,
        store: torch.distributed.Store | None = None,
        device: torch.device | str | None = None,
        timeout_s: float = 600.0,
        group_name: str = "easyr1-weight-sync",
    ) -> WeightSyncGroup:
        """Create this process's member of the group (blocks until all ``world_size`` members joined)."""
        timeout = datetime.timedelta(seconds=timeout_s)
        if store is None:
            store = torch.distributed.TCPStore(host, port, is_master=False, timeout=timeout)
        prefixed = torch.distributed.PrefixStore(group_name, store)
        if backend == "gloo":
            pg = torch.distributed.ProcessGroupGloo(prefixed, rank, world_size, timeout)
            dev = torch.device("cpu")
        elif backend == "nccl":
            dev = torch.device(device or f"cuda:{torch.cuda.current_device()}")
            pg = torch.distributed.ProcessGroupNCCL(prefixed, rank, world_size, timeout)
        else:
            raise ValueError(f"weight sync backend {backend!r}: expected gloo or nccl")
        # One tiny collective so every member knows the group is complete before the first real bucket.
        probe = torch.ones(1, device=dev)
        pg.allreduce([probe]).wait()
        if int(probe.item()) != world_size:
            raise RuntimeError(f"weight sync group has {int(probe.item())} members, expected {world_size}")
        logger.info("weight sync group: rank %d/%d joined (%s, %s:%d)", rank, world_size, backend, host, port)
        return cls(pg, store, rank, world_size, dev)

    def broadcast(self, tensor: torch.Tensor) -> None:
        self.pg.broadcast(tensor, 0).wait()

    def send(self, plan: WeightPlan, tensors: Iterator[tuple[str, torch.Tensor]]) -> int:
        """Rank 0: broadcast ``tensors`` (full tensors in plan order) bucket by bucket; returns bytes sent."""
        sent = 0
        for bucket in plan.buckets:
            specs = [plan.tensors[i] for i in bucket]
            parts = []
            for spec in specs:
                name, value = next(tensors)
                if name != spec.name or tuple(value.shape) != spec.shape:
                    raise RuntimeError(
                        f"weight sync: expected {spec.name} {spec.shape}, got {name} {tuple(value.shape)}"
                    )
                parts.append(value)
            flat = pack_bucket(parts, dtype_from_name(specs[0].dtype), self.device)
            self.broadcast(flat)
            sent += flat.numel() * flat.element_size()
        return sent

    def receive(self, plan: WeightPlan, consume: Callable[[list[tuple[str, torch.Tensor]]], None]) -> int:
        """Ranks ≥ 1: receive every bucket and hand its named tensors to ``consume``; returns bytes received."""
        received = 0
        for items in self.receive_buckets(plan):
            consume(items)
            received += sum(t.numel() * t.element_size() for _, t in items)
        return received

    def receive_buckets(self, plan: WeightPlan) -> Iterator[list[tuple[str, torch.Tensor]]]:
        """Ranks ≥ 1: the plan's buckets as they arrive, as lists of named tensors (views into one flat buffer per
        bucket). Each broadcast happens when the next bucket is requested: a consumer that stops early must call
        :meth:`drain` with the rest, or the sender blocks."""
        for bucket in plan.buckets:
            specs = [plan.tensors[i] for i in bucket]
            flat = torch.empty(sum(s.numel for s in specs), dtype=dtype_from_name(specs[0].dtype), device=self.device)
            self.broadcast(flat)
            yield unpack_bucket(flat, specs)

    @staticmethod
    def drain(buckets: Iterator[list[tuple[str, torch.Tensor]]]) -> int:
        """Receive and drop the buckets a failed consumer left (keeps the sender from blocking); returns how many."""
        return sum(1 for _ in buckets)

    def close(self) -> None:
        # Process groups built outside the default world are freed with the object.
        self.pg = None  # type: ignore[assignment]
