"""Training progress without a terminal. A progress bar redraws itself with carriage returns, which a log
file (nohup, a Slurm job) keeps as one endless line; there, a plain line now and then says the same."""

from __future__ import annotations

import sys
import time

LINES, SECONDS = 20, 60  # a line every 5% of the run, or every minute, whichever comes first


class StepLines:
    def __init__(self, quiet: bool, step: int, stream=None):
        self.stream = stream or sys.stderr
        self.on = not quiet and not self.stream.isatty()
        self.said = (step, time.time())

    def after(self, step: int, total: int, record: dict) -> None:
        """Print ``step N/T: loss …`` if a share of the run or a minute has passed since the last line."""
        last_step, last_time = self.said
        if not self.on or not (step - last_step >= max(1, total // LINES) or time.time() - last_time >= SECONDS
                               or step == total):
            return
        print(f"step {step}/{total}: loss {record['loss']:.4f}, lr {record['lr']:.2e}, "
              f"{record['tokens_per_s']:,.0f} tokens/s, MFU {record['mfu']:.1%}", flush=True)
        self.said = (step, time.time())
