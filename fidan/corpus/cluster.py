"""`fidan data prepare --executor datatrove|slurm|ray`: the same passes as datatrove pipeline executors.

datatrove (Hugging Face's library for processing web-scale text) already knows how to run N tasks on
one machine, as a Slurm job array or on a Ray cluster, how to log them and how to skip finished ones. Each
pass of a preparation becomes one executor whose tasks take every world_size-th unit; the plan and the
merge are executors of one task; each depends on the one before, so the whole chain is submitted at once
(for Slurm: four dependent jobs, and the command returns once they are queued). The work folder next to
OUT holds the units' results and datatrove's logs, so OUT's parent must be on a filesystem that every
node sees. The results are the same as with the local executor: the same code runs each unit.
"""

from __future__ import annotations

import functools
import json
import shutil

from fidan.corpus import pool
from fidan.errors import BadInput, MissingExtra

PASSES = ("scan", "plan", "filter", "merge")
REQUIRED = {"slurm": ("partition", "time")}


try:  # the `cluster` extra; run_on says how to install it
    from datatrove.pipeline.base import PipelineStep
except ImportError:  # pragma: no cover - without the extra only run_on's message is reachable
    PipelineStep = object


class FidanPass(PipelineStep):
    """One pass of a `fidan data prepare` run as a datatrove step; task ``rank`` of ``world_size`` takes
    units rank, rank + world_size, ..."""

    name = "fidan data prepare"
    type = "fidan"

    def __init__(self, prep, which: str):
        super().__init__()
        self.prep, self.which = prep, which

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        p = self.prep
        if self.which == "scan":
            for i in range(rank, len(p.units), world_size):
                if not p.scan_dirs[i].exists():
                    pool.run_unit(functools.partial(p.run_unit, "scan"), i, p.units[i].size, p.scan_dirs[i])
        elif self.which == "plan":
            p.run_plan()
        elif self.which == "filter":
            for i in range(rank, len(p.units), world_size):
                if i in p.ok:
                    j = p.ok.index(i)
                    if not p.filter_dirs[j].exists():
                        pool.run_unit(functools.partial(p.run_unit, "filter"), j, p.units[i].size, p.filter_dirs[j])
        else:
            p.finish()
        return iter(())


def _options(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--executor-option takes KEY=VALUE (e.g. partition=cpu), got '{item}'")
        value = value.strip()
        try:
            out[key.strip()] = json.loads(value)  # numbers, true/false; anything else stays a string
        except ValueError:
            out[key.strip()] = value
    return out


def run_on(prep, executor: str, options: list[str]) -> dict:
    """Run ``prep``'s passes with a datatrove executor; the manifest (local), or what was submitted."""
    try:
        from datatrove.executor import LocalPipelineExecutor
    except ImportError:
        raise MissingExtra(f"--executor {executor} needs datatrove: pip install 'fidan[cluster]'") from None
    opts = _options(options)
    missing = [k for k in REQUIRED.get(executor, ()) if k not in opts]
    if missing:
        raise BadInput(f"--executor {executor} needs " + " and ".join(f"--executor-option {k}=..." for k in missing)
                       + " (e.g. partition=cpu time=04:00:00)")
    if executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor as Executor
    elif executor == "ray":
        try:
            from datatrove.executor import RayPipelineExecutor as Executor
        except ImportError:
            raise MissingExtra("--executor ray needs ray: pip install 'ray[default]'") from None
    else:
        Executor = LocalPipelineExecutor  # noqa: N806
    n = len(prep.units)
    chain = None
    for which in PASSES:
        tasks = n if which in ("scan", "filter") else 1
        # Finished units are skipped by fidan itself (their folders exist), so datatrove runs every task:
        # its completion marks would outlive a finished run and make a rerun with --force skip its merge.
        kwargs = dict(pipeline=[FidanPass(prep, which)], tasks=tasks, logging_dir=str(prep.work / "datatrove" / which),
                      depends=chain, skip_completed=False)
        if executor == "slurm":
            kwargs |= {"job_name": f"fidan-{which}", **opts}
        elif executor == "ray":
            kwargs |= {"workers": min(prep.workers, tasks), **opts}
        else:
            kwargs |= {"workers": min(prep.workers, tasks), "start_method": "spawn", **opts}
        try:
            chain = Executor(**kwargs)
        except TypeError as e:
            raise BadInput(f"--executor-option: {e}; see datatrove's {Executor.__name__} for its options") from None
    chain.run()
    if executor != "datatrove":
        prep.say(f"data: submitted the passes of {prep.out} to {executor} ({n} units; logs under "
                 f"{prep.work / 'datatrove'}); the data folder appears when the merge finishes")
        return {"submitted": executor, "out": str(prep.out), "units": n}
    shutil.rmtree(prep.work, ignore_errors=True)  # datatrove's logs of a run that is over
    return json.loads((prep.out / "manifest.json").read_text())
