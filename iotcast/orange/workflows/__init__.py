"""The add-on's example workflows (``*.ows``), listed by Orange under Help > Example
Workflows through the ``orange.widgets.tutorials`` entry point; :mod:`.make` writes them,
:mod:`.canvas` runs one headless and saves a screenshot."""
