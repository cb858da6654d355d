"""Weight sync actor → engines: bucketed broadcasts over a process group of its own.

The group spans the actor's rank 0 (rank 0 of the group) and every engine process (ranks 1…N; a vLLM engine with
tensor parallelism contributes one rank per TP worker). It is built from plain ``torch.distributed`` objects — a
``TCPStore`` hosted by the actor's rank 0 and a ``ProcessGroupGloo``/``ProcessGroupNCCL`` on top of it — so it
lives beside the actor's own FSDP world (and beside vLLM's groups) without touching the default process group.

Protocol, per sync:

1. the sender publishes a :class:`WeightPlan` once (names, shapes, dtypes, buckets, and which tensors are
   *static*: frozen parameters and buffers, which training never changes); receivers keep it;
2. the sender broadcasts a header: full sync (every bucket) or update (static buckets left out). The first sync
   over a group is full, and so is the first after the actor resumed from a checkpoint; later ones carry only
   what training can change (e.g. not a frozen vision tower);
3. for each bucket sent, the sender concatenates the full tensors (already in the engines' dtype: the actor casts
   its shards before gathering them) into one flat buffer and broadcasts it; receivers allocate the same buffer,
   receive, and split it back into named tensors.

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
    static: bool = False
    """Never changes during training (a frozen parameter or a buffer): sent in full syncs only."""

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
        """Bytes of a full sync (every tensor)."""
        return sum(t.nbytes for t in self.tensors)

    def is_static(self, bucket: int) -> bool:
        """Whether bucket ``bucket`` holds static tensors only (:func:`make_plan` never mixes the two)."""
        return all(self.tensors[i].static for i in self.buckets[bucket])

    def sent_buckets(self, full: bool) -> list[int]:
        """Indices of the buckets a sync sends: all of them, or (``full=False``) the non-static ones."""
        return [b for b in range(len(self.buckets)) if full or not self.is_static(b)]

    def sent_names(self, full: bool) -> list[str]:
        """Names of the tensors a sync sends, in plan order."""
        return [self.tensors[i].name for b in self.sent_buckets(full) for i in self.buckets[b]]

    def sync_bytes(self, full: bool) -> int:
        """Bytes a full sync (``full=True``) or an update sends."""
        return sum(self.tensors[i].nbytes for b in self.sent_buckets(full) for i in self.buckets[b])

    def to_wire(self) -> dict[str, list[Any]]:
        """The plan as plain lists (``{"tensors": [[name, shape, dtype, static], …], "buckets": [[index, …], …]}``).

        vLLM's ``collective_rpc`` msgpack-encodes its arguments and decodes them untyped, so a dataclass would
        reach the workers as a dict; they rebuild the plan with :meth:`from_wire`."""
        return {
            "tensors": [[t.name, list(t.shape), t.dtype, t.static] for t in self.tensors],
            "buckets": [list(b) for b in self.buckets],
        }

    @classmethod
    def from_wire(cls, wire: WeightPlan | Mapping[str, Any]) -> WeightPlan:
        """Rebuild (and check) a plan from :meth:`to_wire`'s output; a ``WeightPlan`` is returned as it is."""
        if isinstance(wire, WeightPlan):
            return wire
        try:
            tensors = tuple(_spec_from_wire(entry) for entry in wire["tensors"])
            buckets = tuple(tuple(int(i) for i in bucket) for bucket in wire["buckets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed weight plan on the wire: {type(exc).__name__}: {exc}") from exc
        indices = sorted(i for bucket in buckets for i in bucket)
        if indices != list(range(len(tensors))):
            raise ValueError(f"weight plan buckets do not cover its {len(tensors)} tensors exactly once")
        for spec in tensors:
            dtype_from_name(spec.dtype)
        return cls(tensors, buckets)


def _spec_from_wire(entry: Any) -> TensorSpec:
    name, shape, dtype, *rest = entry  # a plan without the static flag (3 fields) sends everything every time
    if len(rest) > 1:
        raise ValueError(f"tensor entry with {len(entry)} fields")
    static = rest[0] if rest else False
    if not isinstance(static, bool):
        raise TypeError(f"static flag {static!r} is not a bool")
    return TensorSpec(str(name), tuple(int(s) for s in shape), str(dtype), static)


def make_plan(specs: Iterable[TensorSpec], bucket_bytes: int) -> WeightPlan:
    """Group consecutive tensors of the same dtype and the same ``static`` flag into buckets of at most
    ``bucket_bytes`` (a tensor larger than a bucket travels alone)."""
    tensors = tuple(specs)
    buckets: list[tuple[int, ...]] = []
    current: list[int] = []
    size = 0
    for i, spec in enumerate(tensors):
        first = tensors[current[0]] if current else spec
        same_kind = first.dtype == spec.dtype and first.static == spec.static
        if current and (not same_kind or size + spec.nbytes > bucket_bytes):
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
        self._static_sent = False  # sender: a full sync completed over this group
        self._static_cache: dict[int, torch.Tensor] = {}  # receiver: static buckets of the last full sync (host)
        self._static_plan: WeightPlan | None = None  # the plan that cache belongs to
        self.last_full: bool | None = None
        """Receiver: whether the sync being (or last) received is full, from its header; ``None`` before one."""

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

    @property
    def static_sent(self) -> bool:
        """Sender: whether a full sync over this group has completed (later syncs may leave static tensors out)."""
        return self._static_sent

    def send(self, plan: WeightPlan, tensors: Iterator[tuple[str, torch.Tensor]], *, full: bool = True) -> int:
        """Rank 0: broadcast the header, then ``tensors`` — the full tensors of ``plan.sent_names(full)``, in plan
        order — bucket by bucket; returns bytes sent (header excluded)."""
        self.broadcast(torch.tensor([int(full), len(plan.buckets)], dtype=torch.int64, device=self.device))
        sent = 0
        for b in plan.sent_buckets(full):
            specs = [plan.tensors[i] for i in plan.buckets[b]]
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
        if full:
            self._static_sent = True
        return sent

    def receive(self, plan: WeightPlan, consume: Callable[[list[tuple[str, torch.Tensor]]], None]) -> int:
        """Ranks ≥ 1: receive one sync and hand each bucket's named tensors to ``consume`` (an update carries only
        the non-static tensors; ``consume`` leaves the others as they are); returns bytes received."""
        received = 0
        for items in self.receive_buckets(plan, replay_static=False):
            consume(items)
            received += sum(t.numel() * t.element_size() for _, t in items)
        return received

    def receive_buckets(
        self, plan: WeightPlan, *, replay_static: bool = True
    ) -> Iterator[list[tuple[str, torch.Tensor]]]:
        """Ranks ≥ 1: one sync's buckets as they arrive, as lists of named tensors (views into one flat buffer per
        bucket). Each broadcast happens when the next bucket is requested: a consumer that stops early must call
        :meth:`drain` with the rest, or the sender blocks.

        In an update (the header says static buckets were left out), ``replay_static`` yields the static buckets
        of this group's last full sync from a host copy kept for that purpose, so a consumer sees every tensor of
        the plan each time (host memory: the static part once); without it the static buckets are simply absent
        and no copy is kept (the hf engine and vLLM's worker extension keep what they are not sent; the latter
        checks its byte count against ``plan.sync_bytes(self.last_full)``)."""
        header = torch.empty(2, dtype=torch.int64, device=self.device)
        self.broadcast(header)
        full, n_buckets = bool(header[0].item()), int(header[1].item())
        self.last_full = full
        if n_buckets != len(plan.buckets):
            raise RuntimeError(f"weight sync: the sender's plan has {n_buckets} buckets, this one {len(plan.buckets)}")
        if not full and replay_static and self._static_plan != plan:
            self.drain(self._receive(plan, plan.sent_buckets(False)))  # the sender must not block
            raise RuntimeError("weight sync: an update without the static tensors, but no full sync to replay them")
        if full:
            self._static_cache, self._static_plan = {}, None
        for b in range(len(plan.buckets)):
            specs = [plan.tensors[i] for i in plan.buckets[b]]
            if not full and plan.is_static(b):
                if replay_static:
                    yield unpack_bucket(self._static_cache[b].to(self.device), specs)
                continue
            flat = next(self._receive(plan, [b]))
            if full and replay_static and plan.is_static(b):
                self._static_cache[b] = flat.to("cpu", copy=True)
            yield unpack_bucket(flat, specs)
        if full and replay_static:
            self._static_plan = plan  # only a complete full sync can be replayed from

    def _receive(self, plan: WeightPlan, buckets: list[int]) -> Iterator[torch.Tensor]:
        for b in buckets:
            specs = [plan.tensors[i] for i in plan.buckets[b]]
            flat = torch.empty(sum(s.numel for s in specs), dtype=dtype_from_name(specs[0].dtype), device=self.device)
            self.broadcast(flat)
            yield flat

    @staticmethod
    def drain(buckets: Iterator[list[tuple[str, torch.Tensor]]]) -> int:
        """Receive and drop the buckets a failed consumer left (keeps the sender from blocking); returns how many."""
        return sum(1 for _ in buckets)

    def close(self) -> None:
        # Process groups built outside the default world are freed with the object.
        self.pg = None  # type: ignore[assignment]
