"""The import rule: runtime code (``plc/``, ``jitterbuffer/``, the aiortc integration included)
never imports ``training/``, ``eval/``, ``demo/`` or torch.

Checked twice: by importing every runtime module in a fresh interpreter and looking at what
got loaded, and by reading every ``import`` statement of the runtime's files (a function-level
import runs only when the function does, so the first check alone would miss it).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ("plc", "jitterbuffer")
FORBIDDEN = {"training", "eval", "demo", "torch"}

_IMPORT_ALL = """
import importlib, json, pkgutil, sys
imported = []
for name in %r:
    package = importlib.import_module(name)
    imported.append(name)
    for module in pkgutil.walk_packages(package.__path__, name + "."):
        importlib.import_module(module.name)
        imported.append(module.name)
print(json.dumps({"imported": imported, "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def test_importing_the_runtime_loads_no_training_eval_demo_or_torch():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", _IMPORT_ALL % (RUNTIME,)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"plc.webrtc", "plc.concealers.neural", "jitterbuffer.jitter_buffer"} <= set(result["imported"])
    assert not FORBIDDEN & set(result["loaded"]), f"the runtime loaded {sorted(FORBIDDEN & set(result['loaded']))}"


def test_no_runtime_file_imports_training_eval_demo_or_torch():
    offenders = []
    for package in RUNTIME:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names
                              if n.split(".")[0] in FORBIDDEN]
    assert not offenders, "runtime code imports outside the runtime:\n" + "\n".join(offenders)


def test_aiortc_internals_are_named_in_one_module():
    """Only plc/aiortc_compat.py reaches into aiortc's private attributes (a new aiortc breaks there)."""
    import pytest

    pytest.importorskip("aiortc")
    from plc import aiortc_compat

    private = re.compile(r"_RTCRtpReceiver__|\._(queue|track|origin)\b")
    offenders = [f"{path.relative_to(ROOT)}: {m.group(0)}" for package in RUNTIME + ("demo", "eval")
                 for path in sorted((ROOT / package).rglob("*.py")) if path.name != "aiortc_compat.py"
                 for m in private.finditer(path.read_text())]
    assert not offenders, "aiortc internals outside plc/aiortc_compat.py:\n" + "\n".join(offenders)
    with pytest.raises(RuntimeError, match=f"tested with aiortc {aiortc_compat.TESTED_VERSION}"):
        aiortc_compat.check_receiver(object())
