"""A run's ``config.yaml``: ``args`` (the command's arguments, which `--config` replays) and the resolved run
(stage, model, settings in groups, data and tokenizer hashes, parameters, machine). Written by the training
stages (fidan.training.run_folder), read by `fidan sft` (a base's learning rate), `fidan eval` (a run's seed), the
report and `fidan compare`. `fidan export hf` keeps a copy as ``fidan_config.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from fidan.artifacts.schema import check, stamp
from fidan.errors import BadInput
from fidan.runtime.io import atomic_write_text

RUN_CONFIG = "config.yaml"
FIX = "train the run again, or fix the file by hand"


@dataclass
class RunConfig:
    """The resolved run as a mapping (``doc``, without the stamp), with the groups readers use typed."""

    doc: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def stage(self) -> str | None:
        return self.doc.get("stage")

    @property
    def args(self) -> dict:
        return self._group("args")

    @property
    def model(self) -> dict:
        return self._group("model")

    @property
    def train(self) -> dict:
        return self._group("train")

    def _group(self, name: str) -> dict:
        value = self.doc.get(name)
        return value if isinstance(value, dict) else {}

    def get(self, key: str, default=None):
        return self.doc.get(key, default)

    def seed(self) -> int | None:
        """The seed the run was initialised with (its arguments, its training group, or the top level)."""
        for group in (self.args, self.train, self.doc):
            if isinstance(group.get("seed"), int):
                return group["seed"]
        return None

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / RUN_CONFIG
        atomic_write_text(path, yaml.safe_dump(stamp("run", self.doc), sort_keys=False, allow_unicode=True))
        return path

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """``path`` read and checked; one line when it is not YAML, not a mapping, or from a newer fidan."""
        path = Path(path)
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
            raise BadInput(f"{path} is not valid YAML ({str(e).splitlines()[0]}); {FIX}") from None
        if not isinstance(doc, dict):
            raise BadInput(f"{path} holds a YAML {type(doc).__name__}, not a mapping of settings; {FIX}")
        check("run", doc, path)
        return cls({k: v for k, v in doc.items() if k not in ("artifact", "artifact_version")}, path)

    @classmethod
    def read(cls, folder: str | Path) -> RunConfig | None:
        """The run's config.yaml; None when the folder has none."""
        path = Path(folder) / RUN_CONFIG
        return cls.load(path) if path.is_file() else None
