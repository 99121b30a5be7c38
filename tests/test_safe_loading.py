"""Safe loading: weights come from safetensors, anything else through torch.load(weights_only=True) or JSON;
nothing is unpickled and no model's own code runs (trust_remote_code=False on every transformers load).
Checked on the source of every module, and on a checkpoint that hides a pickled object."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch

from fidan.errors import FidanError

PACKAGE = Path(__file__).resolve().parent.parent / "fidan"
MODULES = sorted(PACKAGE.rglob("*.py"))


def _calls(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = getattr(f.value, "id", "") if isinstance(f, ast.Attribute) else ""
            yield node, owner, name


def _keyword(node: ast.Call, name: str):
    for k in node.keywords:
        if k.arg == name:
            if isinstance(k.value, ast.Name) and k.value.id == name:
                return "the flag"  # passed on from a parameter of the same name (the user's explicit flag)
            return k.value.value if isinstance(k.value, ast.Constant) else "not a constant"
    return "missing"


# The one loader takes --trust-remote-code from the user and passes it on; everywhere else it is False.
FLAG_PASSED_ON = {"model/hf.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_unsafe_loading_in_the_source(path):
    for node, owner, name in _calls(path):
        where = f"fidan/{path.relative_to(PACKAGE)}:{node.lineno}"
        if owner == "torch" and name == "load":
            assert _keyword(node, "weights_only") is True, f"{where}: torch.load without weights_only=True"
        if name == "from_pretrained" and owner != "PreTrainedTokenizerFast":
            allowed = (False, "the flag") if str(path.relative_to(PACKAGE)) in FLAG_PASSED_ON else (False,)
            assert _keyword(node, "trust_remote_code") in allowed, \
                f"{where}: from_pretrained without trust_remote_code=False"
        if owner in ("pickle", "joblib", "dill", "cloudpickle") and name in ("load", "loads"):
            pytest.fail(f"{where}: {owner}.{name} runs code from the file")
        if owner == "np" and name == "load":
            assert _keyword(node, "allow_pickle") is False, f"{where}: np.load without allow_pickle=False"


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_a_checkpoint_with_a_pickled_object_is_refused(tmp_path, monkeypatch):
    from fidan.artifacts.runs import load_checkpoint_state

    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "step-000002"
    ckpt.mkdir()
    torch.save({"step": 2, "evil": Payload()}, ckpt / "state.pt")
    with pytest.raises(FidanError, match="holds more than tensors and plain values"):
        load_checkpoint_state(ckpt)
    assert not (tmp_path / "pwned.txt").exists()
