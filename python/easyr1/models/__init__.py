"""The policy model: building the tiny offline policy, loading any Qwen-VL checkpoint, inputs and forward.

* ``families`` — one adapter per model family (Qwen2.5-VL, Qwen3-VL): everything family-specific.
* ``tiny`` — ``build_tiny_policy(out_dir, seed, family=…)``, ``make_tiny_command`` (``easyr1 make-tiny``).
* ``loading`` — ``load_policy(path, …)`` / ``load_policy_from_config(cfg)`` for tiny and real checkpoints.
* ``inputs`` — ``encode_prompt`` and ``collate`` (prompt left-padded, response right-padded).
* ``forward`` — ``response_log_probs(model, inputs)``: per-token log-probs and entropy.
* ``generation`` — ``generate_sequences``: sampled responses with per-token log-probs.

Submodules import torch/transformers; this package module does not.
"""
