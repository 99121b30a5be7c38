"""What `fidan bench infer --model` names, and the contestants that measure it, one set per precision.

- ``fidan``: a fidan run. fidan's engine on its ``GPT``; transformers' ``generate()`` and ``pipeline()`` on
  the weights of fidan's own export, loaded with ``AutoModelForCausalLM``.
- ``causal``: a transformers causal LM (GPT-2, Llama, Qwen ...), a folder or a cached hub name, loaded by the
  one model loader (``fidan.artifacts.loader.load``) at each precision. fidan's engine, ``generate()`` and
  ``pipeline()`` all run on those same weights, so their tokens can be compared one for one.
- ``seq2seq``: an encoder-decoder (T5-like, ``AutoModelForSeq2SeqLM``): ``generate()``, the prompt going to
  the encoder and the new tokens coming from the decoder.
- ``encoder``: an encoder with a sequence-classification head in transformers (BERT-like): classification
  throughput, measured by ``fidan.bench.infer_encoder``.

The loader reads fidan runs and causal LMs; encoders and encoder-decoders are read here from the folder the
loader located (local, or the hub cache's snapshot), in the dtype the loader would choose for the precision.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable
from pathlib import Path

import torch

from fidan.artifacts.loader import Source, load, load_model, load_transformers_model
from fidan.errors import BadInput
from fidan.inference import Engine, apply_precision
from fidan.inference.precision import LOAD_DTYPE
from fidan.model.gpt import GPT
from fidan.model.hf import DTYPES, checkpoint_dtype, quiet_transformers

SUPPORTED = ("a fidan run, a transformers causal LM (generation), an encoder-decoder such as T5 (generation) "
             "or an encoder with a sequence-classification head such as BERT (classification)")
# A contestant: (prompt rows, their texts) → (timing, the new tokens of each row, or None).
Runner = Callable[[list[list[int]], list[str]], tuple[dict, list[list[int]] | None]]


def _config(source: Source):
    from transformers import AutoConfig

    quiet_transformers()
    try:
        return AutoConfig.from_pretrained(str(source.folder), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as e:
        raise BadInput(f"--model {source.name}: cannot read its config.json as a transformers model "
                       f"({str(e).splitlines()[0][:160]}); `fidan bench infer` measures {SUPPORTED}") from None


def model_family(source: Source) -> str:
    """``fidan``, ``causal``, ``seq2seq`` or ``encoder``; a one-line BadInput for anything else."""
    if source.kind == "adapter":
        raise BadInput(f"--model {source.name} is a LoRA adapter; `fidan bench infer` measures whole models: pass "
                       f"its base ({source.base.name}) or a folder with the adapters merged into the weights")
    if source.kind == "fidan":
        return "fidan"
    from transformers import AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

    config = _config(source)
    archs = getattr(config, "architectures", None) or []
    if getattr(config, "is_encoder_decoder", False):
        if type(config) in AutoModelForSeq2SeqLM._model_mapping:
            return "seq2seq"
    elif any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal"
    elif type(config) in AutoModelForSequenceClassification._model_mapping:
        return "encoder"
    raise BadInput(f"--model {source.name} holds a {', '.join(archs) or config.model_type} model, which "
                   f"`fidan bench infer` does not measure; it measures {SUPPORTED}")


def torch_dtype(source: Source, precision: str) -> torch.dtype:
    """The dtype the loader reads weights in for ``precision`` (``auto``: the checkpoint's own)."""
    name = LOAD_DTYPE[precision]
    return checkpoint_dtype(_config(source)) if name == "auto" else DTYPES[name]


def load_hf(source: Source, family: str, precision: str, device: str):
    """An encoder (with its classification head) or an encoder-decoder at ``precision``, its tokenizer and its
    parameter count (before int8 quantization replaces the Linear layers)."""
    net, tok = load_transformers_model(source, family, torch_dtype(source, precision))
    parameters = sum(x.numel() for x in net.parameters())
    if precision == "int8":
        net = net.float()
    return apply_precision(net.to(device), precision).eval(), tok, parameters


def _clock():
    """A transformers streamer that only notes when each step's tokens arrive (its first call is the prompt,
    or an encoder-decoder's decoder start token)."""
    from transformers.generation.streamers import BaseStreamer

    class Clock(BaseStreamer):
        def __init__(self):
            self.times: list[float] = []

        def put(self, value) -> None:
            self.times.append(time.perf_counter())

        def end(self) -> None:
            pass

    return Clock()


def timing(start: float, first: float, end: float, rows: int, prompt: int, new: int, steps: int) -> dict:
    """Latency and throughput of one generation of ``new`` tokens per row after ``prompt`` tokens."""
    if steps != new:
        raise RuntimeError(f"a contestant generated {steps} tokens per row instead of {new}: the benchmark is void")
    decode_s = max(end - first, 1e-9)
    return {"ttft_ms": (first - start) * 1e3, "prefill_tok_s": rows * prompt / max(first - start, 1e-9),
            "per_token_ms": decode_s * 1e3 / max(new - 1, 1), "decode_tok_s": rows * (new - 1) / decode_s,
            "total_tok_s": rows * new / (end - start), "new_tokens": rows * steps}


def run_fidan(engine: Engine, new: int, prompts: list[list[int]], texts: list[str]) -> tuple[dict, list[list[int]]]:
    from fidan.inference import Sampling

    start, first, steps = time.perf_counter(), None, 0
    tokens: list[list[int]] = [[] for _ in prompts]
    for event in engine.stream(prompts, new, Sampling(temperature=0.0)):
        first = first or time.perf_counter()
        tokens[event.row].append(event.token)
        steps += event.row == 0
    end = time.perf_counter()
    return timing(start, first, end, len(prompts), len(prompts[0]), new, steps), tokens


def run_generate(hf, gen_cfg, skip: int | None, prompts: list[list[int]], texts: list[str]) -> tuple[dict, list]:
    """generate() on token ids; ``skip``: the leading output columns that are not new tokens (None: the prompt's)."""
    clock = _clock()
    ids = torch.tensor(prompts, device=hf.device)
    start = time.perf_counter()
    out = hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=gen_cfg, streamer=clock)
    end = time.perf_counter()
    steps = len(clock.times) - 1  # the first put is the prompt (or the decoder's start token)
    new = out[:, ids.size(1) if skip is None else skip:].tolist()
    return timing(start, clock.times[1], end, len(prompts), ids.size(1), gen_cfg.max_new_tokens, steps), new


def run_pipeline(pipe, gen_cfg, prompts: list[list[int]], texts: list[str]) -> tuple[dict, None]:
    clock = _clock()
    start = time.perf_counter()
    pipe(texts, batch_size=len(texts), generation_config=gen_cfg, streamer=clock, return_full_text=False)
    end = time.perf_counter()
    # The prompt's token count is the ids' the texts were decoded from (the pipeline encodes them again).
    return timing(start, clock.times[1], end, len(texts), len(prompts[0]), gen_cfg.max_new_tokens,
                  len(clock.times) - 1), None


def greedy(hf, new: int, pad_id: int | None, decoder_start: int | None = None):
    """Greedy, exactly ``new`` tokens: no end-of-text id to stop at (so no logits processor is added either).
    generate() fills what its config leaves unset from the model's own generation_config, so the end-of-text
    ids are cleared there too (this copy of the model is the benchmark's alone)."""
    from transformers import GenerationConfig

    hf.generation_config.eos_token_id = None
    hf.generation_config.forced_eos_token_id = None
    extra = {"decoder_start_token_id": decoder_start} if decoder_start is not None else {}
    return GenerationConfig(max_new_tokens=new, do_sample=False, eos_token_id=None, pad_token_id=pad_id,
                            bos_token_id=None, **extra)


def _pipeline_over(hf, folder: Path, device: str, new: int) -> dict[str, Runner]:
    """generate() and a text-generation pipeline over ``hf``, with the folder's tokenizer."""
    from transformers import AutoTokenizer, pipeline

    hf_tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    hf_tok.padding_side = "left"
    if hf_tok.pad_token is None:  # batching needs one (GPT-2's tokenizer has none); the prompts are never padded
        hf_tok.pad_token = hf_tok.eos_token
    gen_cfg = greedy(hf, new, hf_tok.pad_token_id)
    pipe = pipeline("text-generation", model=hf, tokenizer=hf_tok, device=torch.device(device))
    return {"generate": functools.partial(run_generate, hf, gen_cfg, None),
            "pipeline": functools.partial(run_pipeline, pipe, gen_cfg)}


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def fidan_contestants(name: str, precisions: list[str], device: str, new: int, transformers: bool,
                      export_to: Path, load_s: dict, rss: dict) -> tuple[dict, object, int, int]:
    """A fidan run: (contestants per precision, tokenizer, parameters, block size)."""
    started = time.perf_counter()
    net, tok = load_model(name, device=device)
    load_s["fidan_s"] = time.perf_counter() - started
    if not isinstance(net, GPT):
        raise BadInput(f"{name} is not a fidan run")
    block, parameters = net.config.block_size, sum(p.numel() for p in net.parameters())
    if new >= block:
        raise BadInput(f"--new-tokens {new} leaves no room for a prompt in the block of {block} tokens")
    if transformers:
        from fidan.adapt.export import export_hf

        export_hf(model=name, out=str(export_to))
    models: dict = {}
    for p in precisions:
        t0 = time.perf_counter()
        models[p] = {"fidan": functools.partial(run_fidan, Engine(apply_precision(copy.deepcopy(net), p)), new)}
        load_s[f"fidan_{p}_s"] = load_s["fidan_s"] + time.perf_counter() - t0
        if transformers:
            from transformers import AutoModelForCausalLM

            quiet_transformers()
            t0 = time.perf_counter()
            hf = AutoModelForCausalLM.from_pretrained(str(export_to), local_files_only=True, trust_remote_code=False,
                                                       dtype=torch.float32).to(device)
            hf = apply_precision(hf, p).eval()
            load_s[f"transformers_{p}_s"] = time.perf_counter() - t0
            models[p].update(_pipeline_over(hf, export_to, device, new))
        rss[f"after_{p}_mb"] = rss_mb()
    return models, tok, parameters, block


def causal_contestants(source: Source, precisions: list[str], device: str, new: int, transformers: bool,
                       load_s: dict, rss: dict) -> tuple[dict, object, int, int]:
    """A transformers causal LM, through the loader at each precision: (contestants, tokenizer, parameters, block)."""
    models: dict = {}
    for p in precisions:
        t0 = time.perf_counter()
        loaded = load(source, device=device, dtype=LOAD_DTYPE[p])
        parameters, block = loaded.model.num_params(), loaded.model.config.block_size
        if new >= block:
            raise BadInput(f"--new-tokens {new} leaves no room for a prompt in the window of {block} tokens")
        model = apply_precision(loaded.model, p)
        load_s[f"model_{p}_s"] = time.perf_counter() - t0
        models[p] = {"fidan": functools.partial(run_fidan, Engine(model), new)}
        if transformers:
            models[p].update(_pipeline_over(model.net, loaded.folder, device, new))
        rss[f"after_{p}_mb"] = rss_mb()
    return models, loaded.tok, parameters, block


def seq2seq_contestants(source: Source, precisions: list[str], device: str, new: int,
                        load_s: dict, rss: dict) -> tuple[dict, object, int, int | None]:
    """An encoder-decoder: generate() at each precision; (contestants, tokenizer, parameters, encoder window)."""
    models: dict = {}
    for p in precisions:
        t0 = time.perf_counter()
        net, tok, parameters = load_hf(source, "seq2seq", p, device)
        load_s[f"model_{p}_s"] = time.perf_counter() - t0
        gen_cfg = greedy(net, new, tok.pad_token_id, net.config.decoder_start_token_id)
        models[p] = {"generate": functools.partial(run_generate, net, gen_cfg, 1)}
        rss[f"after_{p}_mb"] = rss_mb()
    window = getattr(net.config, "n_positions", None) or getattr(net.config, "max_position_embeddings", None)
    return models, tok, parameters, window


def transformers_version() -> str | None:
    try:
        import transformers
    except ImportError:
        return None
    return transformers.__version__
