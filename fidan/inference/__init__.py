"""Inference: the one decoding runner (KV cache, prefill, steps, stops, the sliding window) behind the engine and
the server's batcher, with sampling, streaming and precision, for every generating command."""

from fidan.inference.engine import Completion, Engine, Event
from fidan.inference.precision import PRECISIONS, apply_precision, check_precision
from fidan.inference.sampling import Sampling, check_sampling, sample_next
from fidan.inference.streaming import TextStream

__all__ = ["PRECISIONS", "Completion", "Engine", "Event", "Sampling", "TextStream", "apply_precision", "check_precision",
           "check_sampling", "sample_next"]
