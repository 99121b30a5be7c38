"""The CUDA paths cannot run here: what fidan decides for them is checked with the device faked (the 4-bit
load's placement and quantization settings, the NCCL backend and GPU per rank, fp16 bases)."""

from __future__ import annotations

import pytest
import torch

from fidan.errors import BadConfig


def test_a_4bit_load_goes_to_the_asked_gpu_with_qloras_settings(hf_qwen_dir, monkeypatch):
    pytest.importorskip("bitsandbytes")
    import transformers

    from fidan.model.hf import load_hf_causal_lm

    seen = {}
    real = transformers.AutoModelForCausalLM.from_pretrained

    def fake(path, **kwargs):
        seen.update(kwargs)
        return real(path, local_files_only=True)  # a plain model stands in for the GPU one

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake)
    load_hf_causal_lm(hf_qwen_dir, device="cuda:1", four_bit=True)
    q = seen["quantization_config"]
    assert seen["device_map"] == {"": 1} and seen["trust_remote_code"] is False
    assert (q.load_in_4bit, q.bnb_4bit_quant_type, q.bnb_4bit_use_double_quant, q.bnb_4bit_compute_dtype) == \
        (True, "nf4", True, torch.bfloat16)
    load_hf_causal_lm(hf_qwen_dir, device="cpu", four_bit=True)
    assert seen["device_map"] == "cpu"
    load_hf_causal_lm(hf_qwen_dir, device="cpu")
    assert seen["dtype"] == torch.bfloat16  # auto: the checkpoint's own


def test_torchrun_on_gpus_takes_nccl_and_one_gpu_per_local_rank(monkeypatch):
    import torch.distributed as dist

    from fidan.runtime import distributed

    calls = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.setdefault("device", d))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.setdefault("backend", backend))
    info = distributed.init_distributed("cuda")
    assert (info.device, info.rank, calls) == ("cuda:1", 1, {"device": "cuda:1", "backend": "nccl"})
    calls.clear()
    assert distributed.init_distributed("cpu").device == "cpu" and calls == {"backend": "gloo"}


def test_fp16_bases_train_in_fp16_on_a_gpu_and_are_refused_on_a_cpu(monkeypatch):
    from fidan.training.starting_point import train_precision

    assert train_precision("auto", "cuda", "fp16") == "fp16"
    assert train_precision("auto", "cuda", "bf16") == "bf16"
    assert train_precision("auto", "cpu", "fp32", four_bit=True) == "bf16"
    with pytest.raises(BadConfig, match="held in fp16, which the CPU does not train in"):
        train_precision("auto", "cpu", "fp16")


def test_the_gpu_memory_peak_is_read_from_torch_cuda_on_cuda_only(monkeypatch):
    from fidan.runtime import perf

    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("sync", device)))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append(("reset", device)))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * 2**20 + 2**19)
    perf.gpu_peak_reset("cuda:1")
    assert perf.gpu_peak_mb("cuda:1") == 3.5
    assert calls == [("sync", "cuda:1"), ("reset", "cuda:1"), ("sync", "cuda:1")]  # the queued work is counted
    calls.clear()
    perf.gpu_peak_reset("cpu")
    perf.sync("cpu")
    assert perf.gpu_peak_mb("cpu") is None and calls == []
