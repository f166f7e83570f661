"""Static checks over the shipped code: checkpoints are loaded weights-only, and no config string
is ever run as code (no eval/exec/compile, no pickle, no unsafe YAML)."""

from __future__ import annotations

import ast

from conftest import ROOT

SOURCES = sorted([*(ROOT / "cpt").rglob("*.py"), *(ROOT / "hydra_plugins").rglob("*.py"), ROOT / "run.py"])


def _calls(path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f"{getattr(f.value, 'id', '?')}.{f.attr}" \
                if isinstance(f, ast.Attribute) else "?"
            yield name, node


def _violations(path):
    for name, call in _calls(path):
        where = f"{path.relative_to(ROOT)}:{call.lineno} {name}()"
        if name in ("eval", "exec", "compile", "__import__", "pickle.load", "pickle.loads", "yaml.unsafe_load",
                    "yaml.full_load", "dill.load"):
            yield where
        if name == "yaml.load" and not any(k.arg == "Loader" and "Safe" in ast.unparse(k.value) for k in call.keywords):
            yield where + " without a safe Loader"
        if name == "torch.load":
            kw = {k.arg: ast.unparse(k.value) for k in call.keywords}
            if kw.get("weights_only") != "True":
                yield where + " without weights_only=True"


def test_no_code_from_strings_and_weights_only_loading():
    assert [v for p in SOURCES for v in _violations(p)] == []


def test_the_scan_sees_the_loaders():
    loads = [(p.name, n) for p in SOURCES for n, _ in _calls(p) if n == "torch.load"]
    assert ("stage_checkpoints.py", "torch.load") in loads  # where checkpoints and cache entries are read
