"""Inference: the one engine (KV cache, batches, stops, streaming) and sampling, for every generating command."""

from fidan.inference.engine import Completion, Engine, Event
from fidan.inference.sampling import Sampling, check_sampling, sample_next
from fidan.inference.streaming import TextStream

__all__ = ["Completion", "Engine", "Event", "Sampling", "TextStream", "check_sampling", "sample_next"]
