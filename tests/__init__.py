"""The test suite (a package, so that ``tests.support`` is ours even when a dependency
installs a top-level ``tests`` package of its own, as two of Orange's do)."""
