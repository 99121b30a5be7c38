"""`fidan bench train`: fidan's training step against a plain PyTorch loop over transformers' GPT-2 or Llama.

Three contestants train the same architecture (size, batch, sequence length, data) in turn, A B C
A B C ..., each in its own worker process so that its peak memory is its own:

- fidan: ``GPT`` with fidan's defaults (bf16 autocast where native, fused AdamW; ``--compile`` optional)
- hf-fp32: ``GPT2LMHeadModel`` (``LlamaForCausalLM`` for a rotary, RMSNorm preset such as ``hizli``) with
  ``torch.optim.AdamW``, the loop a user writes by default
- hf-bf16: the same loop under bf16 autocast
- nanogpt (with ``--against nanogpt:DIR``): the ``GPT`` of nanoGPT's ``model.py`` in a local checkout DIR
  (not shipped with fidan), its own optimizer (``configure_optimizers``), the same precision as fidan's
  step and, with ``--compile``, compiled too: the side-by-side comparison with the reference implementation

The figure is the median over rounds of the per-round ratio fidan / yardstick. MFU divides each
contestant's FLOP/s by the peak of the precision it computes in (fp32 or bf16, measured in the same
run), so MFUs under different peaks do not compare with each other: tokens/s does.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

import torch

from fidan.artifacts.tokenizer import load_tokenizer
from fidan.artifacts.tokens import TokenSplit, encode_splits
from fidan.errors import BadInput, FidanError
from fidan.model.gpt import config_from_preset
from fidan.runtime.device import pick_device
from fidan.runtime.io import atomic_write_json
from fidan.runtime.perf import bf16_supported, measure_peak_flops, mfu, resolve_precision

CONTESTANTS = ("fidan", "hf-fp32", "hf-bf16")
NANOGPT = "nanogpt:"


def nanogpt_dir(spec: str) -> Path:
    """The checkout of ``--against nanogpt:DIR``, checked: it must hold nanoGPT's model.py."""
    folder = Path(spec[len(NANOGPT):]).expanduser()
    if not spec.startswith(NANOGPT) or not (folder / "model.py").is_file():
        raise BadInput(f"--against {spec}: expected nanogpt:DIR with DIR a nanoGPT checkout holding model.py "
                       "(git clone https://github.com/karpathy/nanoGPT)")
    return folder


def _nanogpt(folder: str, cfg, device: str, lr: float):
    """nanoGPT's model and optimizer at fidan's size (its model.py imported from the user's checkout)."""
    import contextlib
    import importlib.util
    import io

    spec = importlib.util.spec_from_file_location("nanogpt_model", Path(folder) / "model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its @dataclass GPTConfig looks its module up there
    spec.loader.exec_module(module)
    conf = module.GPTConfig(block_size=cfg.block_size, vocab_size=cfg.vocab_size, n_layer=cfg.n_layer,
                            n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=cfg.dropout, bias=cfg.bias)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its parameter counts
        model = module.GPT(conf).to(device)
        opt = model.configure_optimizers(0.1, lr, (0.9, 0.95), device.split(":")[0])
    return model, opt


def yardstick_name(cfg) -> str:
    return "GPT2LMHeadModel" if cfg.pos_emb == "learned" else "LlamaForCausalLM"


def yardstick(cfg):
    """transformers' model of the preset's shape and size: GPT-2 for a GPT-2-shaped preset (learned positions,
    LayerNorm), else Llama (rotary positions, RMSNorm, SwiGLU sized to the preset's MLP parameter count)."""
    if cfg.pos_emb == "learned":
        from transformers import GPT2Config, GPT2LMHeadModel

        return GPT2LMHeadModel(GPT2Config(
            vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
            n_head=cfg.n_head, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
            tie_word_embeddings=False, bos_token_id=0, eos_token_id=0))
    from transformers import LlamaConfig, LlamaForCausalLM

    matrices = 3 if cfg.mlp == "swiglu" else 2  # SwiGLU has three; keep the MLP's weight count
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.n_embd, intermediate_size=round(cfg.mlp_hidden * matrices / 3),
        num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_head,
        max_position_embeddings=cfg.block_size, rope_theta=cfg.rope_base, tie_word_embeddings=cfg.tie_embeddings,
        attention_bias=cfg.bias, mlp_bias=cfg.bias, bos_token_id=0, eos_token_id=0))


def _build(name: str, cfg, device: str, compile: bool, lr: float = 1e-3, against: str = "", precision: str = "auto"):
    """Model, optimizer and one training step for a contestant."""
    from fidan.model.gpt import GPT
    from fidan.runtime.perf import autocast
    from fidan.training.optim import make_optimizer

    torch.manual_seed(0)
    if name == "nanogpt":
        model, opt = _nanogpt(against, cfg, device, lr)
        ctx = autocast(device, resolve_precision(precision, device))  # fidan's precision: a like-for-like step
        fwd = torch.compile(model) if compile else model

        def loss_fn(x, y):
            return fwd(x, y)[1]
    elif name == "fidan":
        model = GPT(cfg).to(device)
        opt = make_optimizer(model, "adamw", lr, 0.1, (0.9, 0.95))
        ctx = autocast(device, resolve_precision(precision, device))
        fwd = torch.compile(model) if compile else model

        def loss_fn(x, y):
            return fwd(x, y, return_logits=False)[1]
    else:
        model = yardstick(cfg).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
        ctx = (torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16) if name == "hf-bf16"
               else torch.autocast(device_type=device.split(":")[0], enabled=False))

        def loss_fn(x, y):
            # The plain loop: logits from the model, next-token cross-entropy on our targets.
            logits = model(input_ids=x).logits
            return torch.nn.functional.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))

    def step(x, y):
        with ctx:
            loss = loss_fn(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    return model, step


def _worker(conn, name: str, cfg_dict: dict, token_dir: str, batch_size: int, device: str, compile: bool,
            threads: int, against: str = "", precision: str = "auto") -> None:
    """Runs in its own process: answers ("steps", n) with the seconds of each of n training steps."""
    from fidan.model.gpt import GPTConfig
    from fidan.runtime.device import peak_rss_mb

    if threads:
        torch.set_num_threads(threads)
    cfg = GPTConfig.from_dict(cfg_dict)
    split = TokenSplit(token_dir, "train")
    gen = torch.Generator().manual_seed(1)  # every contestant sees the same batches in the same order
    _, step = _build(name, cfg, device, compile, against=against, precision=precision)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    conn.send("ready")
    while True:
        msg = _receive(conn, name)
        if msg[0] == "stop":
            conn.send({"peak_rss_mb": peak_rss_mb()})
            return
        times = []
        for _ in range(msg[1]):
            x, y = split.random_batch(batch_size, cfg.block_size, gen)
            x, y = x.to(device).contiguous(), y.to(device).contiguous()  # as nanoGPT's loss views them
            t0 = time.perf_counter()
            step(x, y)
            sync()
            times.append(time.perf_counter() - t0)
        conn.send(times)


def _receive(conn, name: str):
    try:
        return conn.recv()
    except EOFError:
        raise FidanError(f"bench worker {name} stopped (its error is printed above)") from None


def results_table(result: dict) -> str:
    """The RESULTS.md table: each MFU names the peak it is a share of, since the peaks differ by precision."""
    rows = ["| contestant | tokens/s (median) | MFU | peak RSS |", "|---|---|---|---|"]
    for name, tps in result["tokens_per_s"].items():
        precision = result["mfu_peak"][name]
        rows.append(f"| {name} | {tps:,.0f} | {result['mfu'][name]:.1%} of {precision} peak "
                    f"({result['peak_gflops'][precision]:,.1f} GFLOP/s) | {result['peak_rss_mb'][name]:,.0f} MiB |")
    return "\n".join(rows) + ("\n\nMFU is a share of the peak of the precision each contestant computes in; "
                               "MFUs under different peaks do not compare: tokens/s does.")


def bench_train(
    data: str,
    tokenizer: str,
    preset: str = "ders",
    batch_size: int = 32,
    block_size: int | None = None,
    rounds: int = 5,
    steps: int = 4,
    warmup: int = 3,
    compile: bool = False,
    precision: str = "auto",
    threads: int = 0,
    device: str = "auto",
    against: str | None = None,
    json: str | None = None,
) -> dict:
    """Tokens/s of fidan's training step against transformers' GPT-2 (fp32 and bf16), interleaved in one run.

    Args:
        data: a data folder (its train split supplies the batches).
        tokenizer: the tokenizer folder (sets the vocabulary size).
        preset: fidan model preset; the GPT-2 yardstick gets the same size.
        batch_size: sequences per step.
        block_size: sequence length (default: the preset's).
        rounds: measured rounds; each runs every contestant once, in turn.
        steps: training steps per contestant per round.
        warmup: unmeasured steps per contestant first.
        compile: run fidan's model under torch.compile.
        precision: fidan's (and nanoGPT's) precision: auto (bf16 autocast where the device runs it natively),
            fp32 or bf16. The GPT-2 loops keep theirs (hf-fp32, hf-bf16).
        threads: torch threads per worker (0: torch's default).
        device: auto, cpu or cuda.
        against: nanogpt:DIR also runs nanoGPT's model.py from a local checkout DIR at the same size, precision
            and batches (compiled too with --compile); fidan/nanogpt is reported beside the GPT-2 ratios.
        json: also write the results to this JSON file.
    """
    if rounds < 1 or steps < 1:
        raise FidanError("--rounds and --steps must be at least 1")
    if precision not in ("auto", "fp32", "bf16"):
        raise BadInput(f"--precision must be auto, fp32 or bf16, got {precision}")
    device = pick_device(device)
    tok = load_tokenizer(tokenizer)
    cfg = config_from_preset(preset, tok.vocab_size, block_size=block_size)
    print(f"yardstick: transformers' {yardstick_name(cfg)} of {preset}'s size, in a plain loop")
    token_dir = encode_splits(data, tok)
    TokenSplit(token_dir, "train").check_block(cfg.block_size, "train")
    names = [n for n in CONTESTANTS if n != "hf-bf16" or bf16_supported(device)]
    reference = str(nanogpt_dir(against)) if against else ""
    if reference:
        names.append("nanogpt")

    ctx = mp.get_context("spawn")
    workers = {}
    for name in names:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, name, cfg.to_dict(), str(token_dir), batch_size, device,
                                                 compile, threads, reference, precision), daemon=True)
        proc.start()
        child.close()  # only the worker holds its end: if it dies, recv() raises instead of waiting forever
        workers[name] = (parent, proc)
    try:
        for name, (conn, _) in workers.items():
            if _receive(conn, name) != "ready":
                raise FidanError(f"bench worker {name} failed to start")
            conn.send(("steps", warmup))
            _receive(conn, name)
        tokens = batch_size * cfg.block_size
        per_round: dict[str, list[float]] = {n: [] for n in names}
        for r in range(rounds):
            for name, (conn, _) in workers.items():
                conn.send(("steps", steps))
                per_round[name].append(tokens * steps / sum(_receive(conn, name)))
            line = "  ".join(f"{n} {per_round[n][-1]:,.0f}" for n in names)
            print(f"round {r + 1}/{rounds}: tokens/s  {line}")
        rss = {}
        for name, (conn, proc) in workers.items():
            conn.send(("stop",))
            rss[name] = round(_receive(conn, name)["peak_rss_mb"], 1)
            proc.join(timeout=30)
    finally:
        for _, proc in workers.values():
            if proc.is_alive():
                proc.terminate()

    from fidan.model.gpt import GPT

    flops_per_token = GPT(cfg).flops_per_token()
    peaks = {p: measure_peak_flops(device, p, seconds=1.0) for p in ("fp32", "bf16")}
    fidan_precision = resolve_precision(precision, device)
    result = {"preset": preset, "vocab_size": cfg.vocab_size, "batch_size": batch_size, "block_size": cfg.block_size,
              "n_layer": cfg.n_layer, "n_embd": cfg.n_embd, "against": against,
              "yardstick": yardstick_name(cfg),
              "rounds": rounds, "steps": steps, "compile": compile, "device": device, "torch": torch.__version__,
              "threads": threads or torch.get_num_threads(), "fidan_precision": fidan_precision,
              "flops_per_token": flops_per_token, "peak_gflops": {k: round(v / 1e9, 1) for k, v in peaks.items()},
              "tokens_per_s": {}, "mfu": {}, "mfu_peak": {}, "peak_rss_mb": rss, "ratios": {}, "ratio_range": {}}
    for name in names:
        tps = statistics.median(per_round[name])
        precision = fidan_precision if name in ("fidan", "nanogpt") else name.split("-")[1]
        result["tokens_per_s"][name] = round(tps, 1)
        result["mfu"][name] = round(mfu(flops_per_token, tps, peaks[precision]), 4)
        result["mfu_peak"][name] = precision  # which entry of peak_gflops this MFU is measured against
    for name in names[1:]:
        ratios = [a / b for a, b in zip(per_round["fidan"], per_round[name], strict=True)]
        result["ratios"][f"fidan/{name}"] = round(statistics.median(ratios), 3)
        result["ratio_range"][f"fidan/{name}"] = [round(min(ratios), 3), round(max(ratios), 3)]

    print(f"\n{preset}: vocab {cfg.vocab_size}, batch {batch_size} x {cfg.block_size}, {device}, "
          f"{result['threads']} threads, torch {torch.__version__}\n")
    print(results_table(result))
    for key, ratio in result["ratios"].items():
        low, high = result["ratio_range"][key]
        print(f"  {key}: {ratio:.2f}x (median of {rounds} per-round ratios, {low:.2f}x to {high:.2f}x)")
    if json:
        atomic_write_json(json, result)
    return result
