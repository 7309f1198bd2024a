"""The house rules of DESIGN.md: the library never imports gradio or db."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import obt_eval


def test_no_library_module_imports_gradio_or_db():
    modules = sorted(m.name for m in pkgutil.walk_packages(obt_eval.__path__, prefix="obt_eval."))
    assert len(modules) > 40  # the walk really found the library
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('gradio', 'db', 'webapp', 'pipelines'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
