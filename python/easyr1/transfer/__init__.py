"""Weight transfer between the actor and the rollout engines, neutral ground for both: ``easyr1.actor`` sends
with it and ``easyr1.rollout`` receives with it, so neither imports the other for it. Depends on torch only (no
``easyr1.actor``, ``easyr1.rollout`` or ``easyr1.trainer`` import; tests/test_import_graph.py checks)."""
