"""Puts ``helpers_engine`` (this folder's test helpers) on the import path of the engine tests.

The project runs pytest with ``--import-mode=importlib``, which does not add test folders to
``sys.path``; this conftest is imported before the test modules of this folder and does it.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
