"""The checks of ``python -m experiments.gpu_check``; each returns a dict of figures and ``ok``.

Only public entry points of visgrpo are used: ``load_policy`` / ``PolicyConfig``, the
attention probe (``AttentionProbe``), ``RLVRModule`` trained by a Lightning ``Trainer`` on prompt batches of
``PromptCollator``, and the credit method classes.
"""

from __future__ import annotations

import math
import time

import torch

from experiments.gpu_check.workspace import probe_inputs
from visgrpo.attention.probe import AttentionProbe
from visgrpo.credit import CREDIT_METHODS, build_credit
from visgrpo.models.loading import PolicyConfig, load_policy

CREDIT = tuple(CREDIT_METHODS.names())  # every registered credit method is trained (``none``: the plain objective)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _load(model_dir, dtype: str, device: str, impl: str = "sdpa", **kw):
    extra = {"device_map": {"": 0}} if device == "cuda" and "quantization" not in kw else {}
    model, processor = load_policy(
        PolicyConfig(str(model_dir), dtype=dtype, attn_implementation=impl, extra_kwargs=extra, **kw)
    )
    return model.to(device), processor


def _on(inputs: dict, device: str) -> dict:
    return {k: v.to(device) for k, v in inputs.items()}


def probe_exactness(model_dir, dtype: str, device: str, size) -> dict:
    """Probe (SDPA) vs eager ``output_attentions`` on the response x image block, per head.

    Probed layers: the middle and the last. Exactness is judged in float32 (1e-4). In
    bfloat16 the two models differ by more than the probe: eager rounds its scores and
    probabilities to bfloat16 and every earlier layer's output (vision tower included)
    differs by the kernels' bfloat16 rounding, so that run only bounds the end-to-end
    difference (25% of the largest probability compared) and reports it.
    """
    model, processor = _load(model_dir, dtype, device)
    model.eval()
    inputs, P, T, cols = probe_inputs(processor, size)
    n = model.config.get_text_config().num_hidden_layers
    layers = sorted({n // 2, n - 1})
    rows = P - 1 + torch.arange(T)  # [T] response rows
    x = _on(inputs, device)
    with torch.no_grad(), AttentionProbe(model, layers, rows[None], cols[None], per_head=True) as probe:
        model(**x, use_cache=False)
    got = {k: v.float().cpu() for k, v in probe.image_attention.items()}  # [1, H, T, N]
    model.set_attn_implementation("eager")
    with torch.no_grad():
        out = model(**x, use_cache=False, output_attentions=True)
    res = {"dtype": dtype, "layers": layers, "rows": T, "image_tokens": int(len(cols)), "per_layer": {}}
    worst = 0.0
    for layer in layers:
        ref = out.attentions[layer].float().cpu()[:, :, rows][..., cols]  # [1, H, T, N]
        diff = float((got[layer] - ref).abs().max())
        top = float(ref.abs().max())
        res["per_layer"][str(layer)] = {"max_abs_diff": diff, "max_prob": top}
        worst = max(worst, diff if dtype == "float32" else diff / max(top, 1e-12))
    res["max_abs_diff"] = max(v["max_abs_diff"] for v in res["per_layer"].values())
    res["tolerance"] = "max_abs_diff <= 1e-4" if dtype == "float32" else "max_abs_diff <= 0.25 * max_prob"
    res["ok"] = worst <= (1e-4 if dtype == "float32" else 0.25)
    del model, out, probe
    return res


def memory_and_throughput(model_dir, dtype: str, device: str, size) -> dict:
    """Peak memory and time of one forward+backward (all weights trainable) of
    ``size.micro_batch`` responses: plain SDPA, the probe on one layer with gradient (EASE), the probe on every
    layer without gradient, and eager ``output_attentions=True``. Peak memory (CUDA only) is
    ``max_memory_allocated`` minus the allocation before the pass.
    """
    model, processor = _load(model_dir, dtype, device)
    model.train()
    b = size.micro_batch
    inputs, P, T, cols = probe_inputs(processor, size, micro_batch=b)
    x = _on(inputs, device)
    n = model.config.get_text_config().num_hidden_layers
    rows = (P - 1 + torch.arange(T))[None].expand(b, -1)  # [b, T]
    img = cols[None].expand(b, -1)  # [b, N]
    target = x["input_ids"][:, P:]  # [b, T]

    def step(mode: str) -> tuple[float, float | None]:
        model.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() if device == "cuda" else 0
        _sync(device)
        t0 = time.perf_counter()
        aux = torch.zeros((), device=device)
        if mode == "sdpa":
            out = model(**x, use_cache=False, logits_to_keep=T + 1)
        elif mode == "eager_attn":
            out = model(**x, use_cache=False, logits_to_keep=T + 1, output_attentions=True)
            aux = sum(a[..., P - 1:, :].float().mean() for a in out.attentions) * 0.0
        else:
            layers = [2 * n // 3] if mode == "probe_one_grad" else list(range(n))
            grad = layers if mode == "probe_one_grad" else []
            with AttentionProbe(model, layers, rows, img, grad_layers=grad) as probe:
                out = model(**x, use_cache=False, logits_to_keep=T + 1)
            if grad:
                aux = 1e-3 * probe.image_attention[grad[0]].sum()
        logits = out.logits[:, :-1].float()  # [b, T, V]: row t predicts response token t
        logp = torch.log_softmax(logits, -1).gather(-1, target[..., None])[..., 0]
        loss = -logp.mean() + aux
        loss.backward()
        _sync(device)
        secs = time.perf_counter() - t0
        peak = (torch.cuda.max_memory_allocated() - before) / 2**30 if device == "cuda" else None
        if not math.isfinite(float(loss)):
            raise RuntimeError(f"{mode}: non-finite loss")
        del out, logits, logp, loss
        return secs, peak

    step("sdpa")  # warm-up (kernels, allocator)
    res = {"micro_batch": b, "sequence_length": int(x["input_ids"].shape[1]), "response_tokens": T,
           "image_tokens": int(len(cols)), "modes": {}}
    for mode in ("sdpa", "probe_one_grad", "probe_all"):
        secs, peak = step(mode)
        res["modes"][mode] = {"seconds": secs, "peak_gib": peak}
    model.set_attn_implementation("eager")
    secs, peak = step("eager_attn")
    res["modes"]["eager_attn"] = {"seconds": secs, "peak_gib": peak}
    m = res["modes"]
    res["fwd_bwd_tokens_per_s"] = b * res["sequence_length"] / m["sdpa"]["seconds"]
    if device == "cuda":
        for k in ("probe_one_grad", "probe_all", "eager_attn"):
            m[k]["extra_gib"] = m[k]["peak_gib"] - m["sdpa"]["peak_gib"]
        eager_x = m["eager_attn"]["extra_gib"]
        res["probe_all_extra_over_eager_extra"] = m["probe_all"]["extra_gib"] / eager_x if eager_x > 0 else None
    res["ok"] = all(math.isfinite(v["seconds"]) for v in m.values())
    return res


class _StepTimer:
    """Lightning callback: wall time, tokens and peak memory of each training step; stops
    the run at the check's deadline.
    """

    def __init__(self, device: str, deadline: float):
        import lightning.pytorch as pl

        outer = self

        class Cb(pl.Callback):
            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                _sync(device)
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                outer.t0 = time.perf_counter()

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                _sync(device)
                rollout = getattr(module, "last_rollout", None)
                mask = getattr(rollout, "attention_mask", None)
                metrics = dict(getattr(module, "last_metrics", {}) or {})
                outer.steps.append({
                    "seconds": time.perf_counter() - outer.t0,
                    "tokens": int(mask.sum()) if mask is not None else None,
                    "responses": int(mask.shape[0]) if mask is not None else None,
                    "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
                    "metrics": {k: float(v) for k, v in metrics.items()},
                })
                if time.monotonic() > deadline:
                    trainer.should_stop = True

        self.t0, self.steps, self.callback = 0.0, [], Cb()


def _credit(name: str) -> list:
    return build_credit(name).methods  # the registered method with its defaults ([] for none)


def train_steps(model_dir, rows, size, dtype: str, device: str, credit: str, deadline: float,
                lora: bool = True, quantization: str | None = None, steps: int | None = None,
                dynamic_sampling: bool = False) -> dict:
    """``steps`` RLVRModule steps (DAPO, the given credit method) through a Lightning Trainer.

    DAPO's dynamic sampling is off unless asked (one round of it is checked on its own), so
    that a failure there does not hide the credit methods' results.
    """
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    from visgrpo.data.geometry import processor_geometry
    from visgrpo.lightning import RLVRModule
    from visgrpo.lightning.data import PromptCollator
    from visgrpo.models.lora import LoraSettings
    from visgrpo.rewards import RewardSpec
    from visgrpo.rollout import SamplingConfig

    steps = steps or size.steps
    extra = {"device_map": {"": 0}} if device == "cuda" and quantization is None else {}
    policy = PolicyConfig(
        str(model_dir), dtype=dtype, attn_implementation="sdpa", extra_kwargs=extra,
        lora=LoraSettings() if lora else None, quantization=quantization,
        double_quant=size.text is not None,  # tiny models have too few blocks for it
    )
    t0 = time.perf_counter()
    module = RLVRModule(
        policy, objective="dapo", objective_overrides={"max_sampling_tries": 1, "overlong_shaping": False,
                                                "dynamic_sampling": dynamic_sampling}, credit=_credit(credit),
        rewards=[RewardSpec("experiments.gpu_check.workspace:spread_reward")],
        sampling=SamplingConfig(num_generations=size.generations, max_new_tokens=size.max_new_tokens),
        micro_batch_size=size.micro_batch, learning_rate=1e-4,
    )
    load_s = time.perf_counter() - t0
    before = {n: p.detach().float().clone() for n, p in module.named_parameters() if p.requires_grad}
    collate = PromptCollator(module.processor, processor_geometry(module.processor), "{question}", None)
    data = DataLoader(rows, batch_size=size.prompts, shuffle=False, collate_fn=collate)
    timer = _StepTimer(device, deadline)
    trainer = pl.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu", devices=1, max_steps=steps, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer.callback],
    )
    trainer.fit(module, train_dataloaders=data)
    changed = sum(
        int(not torch.equal(p.detach().float().cpu(), before[n].cpu()))
        for n, p in module.named_parameters() if n in before
    )
    done = timer.steps
    losses = [s["metrics"].get("loss/total") for s in done]
    timed = done[1:] or done  # the first step includes CUDA/cuDNN warm-up
    tokens = [s["tokens"] for s in timed if s["tokens"] is not None]
    secs = sum(s["seconds"] for s in timed)
    res = {
        "credit": credit, "lora": lora, "quantization": quantization, "dynamic_sampling": dynamic_sampling,
        "load_seconds": load_s,
        "steps_done": int(trainer.global_step), "steps_asked": steps,
        "step_seconds": [s["seconds"] for s in done],
        "tokens_per_step": [s["tokens"] for s in done],
        "train_tokens_per_s": sum(tokens) / secs if tokens and secs > 0 else None,
        "peak_gib": max((s["peak_gib"] for s in done if s["peak_gib"] is not None), default=None),
        "params_changed": changed, "params_trainable": len(before),
        "last_metrics": {k: v for k, v in (done[-1]["metrics"] if done else {}).items() if "_pos" not in k},
    }
    finite = all(v is not None and math.isfinite(v) for v in losses)
    skipped = sum(s["metrics"].get("train/nonfinite_skipped", 0.0) for s in done)
    res["ok"] = bool(done) and res["steps_done"] == steps and finite and skipped == 0 and changed > 0
    del module, trainer
    return res
