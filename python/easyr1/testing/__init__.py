"""Test doubles for the tests and benchmarks — never built from a config, never imported by the product code.

* :mod:`easyr1.testing.judge_server` — an OpenAI-compatible judge server on loopback (real HTTP) with scripted
  failures and scheduled outages (``python -m easyr1.testing.judge_server``);
* :mod:`easyr1.testing.simulated_editor` — a sleep-based editor with opt-in faults (``allow_exit`` for ``!die``).
"""
