"""Import pyworld on environments whose setuptools no longer ships `pkg_resources`.

pyworld 0.3.x reads its own version with `pkg_resources` at import time; setuptools >= 81 removed
that module, so a plain `import pyworld` fails although the compiled extension works. A throw-away
stand-in answers that one call and is removed again so nothing else mistakes it for setuptools.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import types
from typing import Any


def import_pyworld() -> Any:
    if "pyworld" in sys.modules:
        return sys.modules["pyworld"]
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        shim = types.ModuleType("pkg_resources")

        def get_distribution(name: str) -> Any:
            return types.SimpleNamespace(version=importlib.metadata.version(name))

        shim.get_distribution = get_distribution  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
        try:
            return importlib.import_module("pyworld")
        finally:
            if sys.modules.get("pkg_resources") is shim:
                del sys.modules["pkg_resources"]
    return importlib.import_module("pyworld")
