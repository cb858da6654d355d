"""What several packages share and none owns: value types (:mod:`.types`), seeds (:mod:`.seeds`), the judge
dimensions (:mod:`.dimensions`) and the registries (:mod:`.registries`).

``easyr1.core`` sits below every other package: it imports no other ``easyr1`` package at run time and nothing
heavy (no torch, Ray or PIL), so the config tree, the pure ``algorithms`` and every pool can depend on it.
Importing this package imports none of its modules.
"""
