"""Every editor backend and the editor pool satisfy the editing protocols (checked on the classes: building them
loads models or starts Ray)."""

from __future__ import annotations

import pytest

from easyr1.core.protocols import conformance_problems
from easyr1.core.registries import EDITOR_BACKENDS
from easyr1.editing.pool import EditorPool
from easyr1.editing.protocol import DrainsMetrics, Editor, EditorService
from easyr1.testing.simulated_editor import SimulatedEditor


@pytest.mark.parametrize("name", EDITOR_BACKENDS.names())
def test_every_registered_backend_is_an_editor(name):
    cls = EDITOR_BACKENDS.load(name)
    assert conformance_problems(cls, Editor) == []


def test_the_pool_is_an_editor_service_with_declared_metric_draining():
    assert conformance_problems(EditorPool, EditorService) == []
    assert issubclass(EditorService, DrainsMetrics) and "drain_metrics" in dir(EditorService)
    assert conformance_problems(SimulatedEditor, Editor) == []


def test_conformance_catches_a_wrong_signature():
    class Wrong:
        def edit(self, batch, extra):  # renamed and an extra required parameter
            return []

    class NoDrain:
        def edit(self, requests):
            return []

        def close(self):
            pass

    assert conformance_problems(Wrong, Editor) == ["edit: parameter 0 must be 'requests'"]
    assert conformance_problems(NoDrain, EditorService) == ["drain_metrics: missing"]
