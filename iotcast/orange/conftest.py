"""The add-on's modules import Orange: without it (the project's own environment, which
installs Orange only with the ``orange`` extra), pytest's doctest collection skips them."""

import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("Orange") else ["*.py", "*/*.py"]
