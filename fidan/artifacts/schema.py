"""One versioned schema per artifact kind: every file that describes an artifact says what it is and in
which version of its layout, and every reader checks it.

``"artifact": "fidan-<kind>", "artifact_version": N`` sits in a data folder's ``manifest.json`` (kinds
``data`` and ``instructions``), a token folder's ``meta.json`` (``tokens``), a model's ``config.json``
(``model``) and a checkpoint's state (``checkpoint``). Files written before the field existed read as
version 1. A reader refuses, with one line, a file of another kind or of a newer version than it knows:
the fix is to point it at the right folder or to upgrade fidan.
"""

from __future__ import annotations

from fidan.errors import BadInput

VERSIONS = {"data": 1, "instructions": 1, "tokens": 1, "model": 1, "checkpoint": 1}


def stamp(kind: str, record: dict) -> dict:
    """``record`` with its kind and layout version first."""
    return {"artifact": f"fidan-{kind}", "artifact_version": VERSIONS[kind],
            **{k: v for k, v in record.items() if k not in ("artifact", "artifact_version")}}


def check(kinds: str | tuple[str, ...], record: dict, where: object) -> str:
    """The kind ``record`` declares (one of ``kinds``; a file without the field counts as the first)."""
    kinds = (kinds,) if isinstance(kinds, str) else kinds
    declared = record.get("artifact")
    kind = kinds[0] if declared is None else str(declared).removeprefix("fidan-")
    if kind not in kinds:
        wanted = " or ".join(f"fidan-{k}" for k in kinds)
        raise BadInput(f"{where} describes a {declared} artifact, not {wanted}; pass the right folder")
    version = record.get("artifact_version", 1)
    if not isinstance(version, int) or version > VERSIONS[kind]:
        raise BadInput(f"{where} is fidan-{kind} version {version}, newer than this fidan reads "
                       f"(up to {VERSIONS[kind]}); upgrade fidan")
    return kind
