"""Rollouts with Hugging Face ``generate`` (the default engine; CPU and GPU, plain or peft).

Without shared prefill, ``generate`` is called once per batch with ``num_return_sequences =
G``. In transformers 5 the vision tower encodes each image once and ``_expand_multimodal_outputs`` repeats each
prompt's whole image group G times, which is the layout of ``RolloutBatch.pixel_values``
(prompt i's pixel rows repeated for each of its G responses); tests/rollout/test_hf.py
checks that teacher-forced logits of the batch reproduce the generation logits.

Shared prefill (``share_prefill=True``, the default): ``generate`` expands the prompts to
``P * G`` rows before its prefill, so the language model would process every prompt G times.
Instead the engine runs the model once on the ``P`` prompts (all tokens but the last, images
included), repeats the resulting KV cache and the model's M-RoPE offsets (``rope_deltas``)
G times per row, and calls ``generate`` on the expanded ids with that cache: it processes
only the last prompt token, then decodes as before (tests/rollout/test_shared_prefill.py
checks tokens and logits against the G-fold prefill).
"""

from __future__ import annotations

import contextlib

import torch

from visgrpo.data.batch import PromptBatch, RolloutBatch
from visgrpo.models.lora import unwrap_peft
from visgrpo.models.prefix import (
    cache_keyword,
    expand_prefix,
    prefill_prefix,
    prefix_model_blocker,
    repeat_index,
)
from visgrpo.rollout.assemble import assemble_rollout, encode_prompts
from visgrpo.rollout.base import ROLLOUT_ENGINES, SamplingConfig
from visgrpo.rollout.vision import eos_token_ids, vision_token_ids

# Processor outputs with one entry per prompt token (sliced with the prompt for the prefill).
TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def shared_prefill_blocker(model, enc: dict[str, torch.Tensor], n_return: int) -> str | None:
    """Why the prompts' prefill cannot be shared by their responses here (``None``: it can).

    Sharing needs more than one response per prompt, a model that keeps its M-RoPE offsets
    between calls (``model.model.rope_deltas``: the Qwen-VL families), images in the prompts
    (the offsets are only computed for multimodal input), a text token at the end of every
    prompt (it is the one token ``generate`` still processes) and no peft prompt-learning
    adapter (those build their own cache).
    """
    if n_return == 1:
        return "one response per prompt: nothing to share"
    blocker = prefix_model_blocker(model)
    if blocker is not None:
        return blocker
    if "pixel_values" not in enc or "mm_token_type_ids" not in enc:
        return "prompts without images"
    if enc["input_ids"].shape[1] < 2 or bool(enc["mm_token_type_ids"][:, -1].any()):
        return "a prompt does not end with a text token"
    return None


@contextlib.contextmanager
def eval_mode(model):
    """Put ``model`` in eval mode, restoring each submodule's own mode afterwards."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes.items():
            m.training = training


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device):
    """Seed torch's RNG for the block without disturbing the caller's RNG stream."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@ROLLOUT_ENGINES.register("hf")
class HFRolloutEngine:
    """Sample with ``model.generate``.

    Args:
        on_vision_token: ``"mask"`` removes generated vision tokens from a response,
            ``"reject"`` marks the response rejected (see visgrpo/rollout/assemble.py).
        return_logits: keep the raw generation logits in ``RolloutBatch.generation_logits``
            (memory heavy: tests and debugging only).
        generate_kwargs: extra keyword arguments for ``generate`` (e.g. ``logits_processor``).
        share_prefill: prefill each prompt once and give its KV cache to its G sampled
            responses (see the module docstring); the tokens and logits are those of the
            G-fold prefill up to float rounding. Greedy decoding, ``G = 1`` and models that
            cannot share (:func:`shared_prefill_blocker`) use the G-fold prefill.
    """

    def __init__(
        self,
        on_vision_token: str = "mask",
        return_logits: bool = False,
        generate_kwargs: dict | None = None,
        share_prefill: bool = True,
    ) -> None:
        if on_vision_token not in ("mask", "reject"):
            raise ValueError(f"on_vision_token must be 'mask' or 'reject', got {on_vision_token!r}")
        self.on_vision_token = on_vision_token
        self.return_logits = return_logits
        self.generate_kwargs = dict(generate_kwargs or {})
        self.share_prefill = share_prefill

    def generation_config(
        self, sampling: SamplingConfig, eos: list[int], pad: int, n_return: int,
        suppress: list[int] | None = None,
    ):
        """A fresh ``GenerationConfig`` (nothing inherited from the checkpoint's sampling defaults).

        ``suppress``: token ids that can never be sampled (``suppress_tokens``: their logits
        are set to -inf before greedy or sampled decoding); :meth:`generate` passes the
        vision / placeholder tokens, whose sampling would break the image-token count of the
        training forward (``masked_scatter`` / RoPE index) hours into a run.
        """
        from transformers import GenerationConfig

        kwargs = dict(
            max_new_tokens=sampling.max_new_tokens,
            num_return_sequences=n_return,
            eos_token_id=eos,
            pad_token_id=pad,
            repetition_penalty=sampling.repetition_penalty,
            stop_strings=list(sampling.stop_strings) or None,
            use_cache=True,
            return_dict_in_generate=True,
            output_logits=self.return_logits,
            suppress_tokens=list(suppress) if suppress else None,
        )
        if sampling.do_sample:
            kwargs.update(
                do_sample=True,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
            )
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return GenerationConfig(**kwargs)

    @torch.no_grad()
    def generate(
        self,
        model,
        processor,
        prompts: PromptBatch,
        sampling: SamplingConfig,
        seed: int | None = None,
    ) -> RolloutBatch:
        """Sample ``sampling.num_generations`` responses per prompt.

        Args:
            model: the policy (transformers model or peft wrapper); its train/eval mode is restored.
            processor: the model's processor.
            prompts: the prompts.
            sampling: sampling settings (``do_sample=False``: greedy).
            seed: seeds this call's sampling (the global RNG stream is left untouched);
                ``None`` draws from the global RNG.
        """
        if len(prompts) == 0:
            raise ValueError("HFRolloutEngine.generate: empty PromptBatch")
        tok = processor.tokenizer
        device = _device_of(model)
        enc = encode_prompts(processor, prompts)
        eos = eos_token_ids(tok, getattr(model, "generation_config", None))
        G = sampling.num_generations
        n_return = G if sampling.do_sample else 1
        inputs = {k: v.to(device) for k, v in enc.items()}
        extra = dict(self.generate_kwargs)
        if sampling.stop_strings:
            extra["tokenizer"] = tok
        share = self.share_prefill and shared_prefill_blocker(model, enc, n_return) is None
        config = self.generation_config(
            sampling, eos, tok.pad_token_id, 1 if share else n_return,
            suppress=vision_token_ids(tok),
        )
        with eval_mode(model), seeded(seed, device):
            if share:
                out = _generate_shared_prefill(model, inputs, n_return, config, extra)
            else:
                out = model.generate(**inputs, generation_config=config, **extra)
        P = enc["input_ids"].shape[1]
        gen = out.sequences[:, P:].cpu()  # [n * n_return, T_gen]
        logits = (
            torch.stack(out.logits, 1) if self.return_logits else None
        )  # [n*n_return, T_gen, V]
        if n_return != G:  # greedy: G identical copies
            gen = gen.repeat_interleave(G, 0)
            logits = logits.repeat_interleave(G, 0) if logits is not None else None
        return assemble_rollout(
            processor,
            prompts,
            enc,
            gen.tolist(),
            G,
            eos_ids=eos,
            vision_ids=vision_token_ids(tok),
            on_vision_token=self.on_vision_token,
            stop_strings=list(sampling.stop_strings),
            device=device,
            generation_logits=logits,
        )


def _generate_shared_prefill(model, inputs: dict[str, torch.Tensor], G: int, config, extra: dict):
    """``generate`` for ``G`` responses per prompt with one prefill per prompt.

    The model runs once on the prompts without their last token (images encoded here, once),
    the KV cache and the M-RoPE offsets are repeated ``G`` times per row (the layout of
    ``num_return_sequences``), and ``generate`` continues from the cache on the expanded
    ids: it processes the last prompt token, then decodes. ``config`` must ask for one
    sequence per row; the caller checks :func:`shared_prefill_blocker` first.
    """
    base = unwrap_peft(model)
    prefill = {k: v[:, :-1] if k in TOKEN_KEYS else v for k, v in inputs.items()}
    _, cache = prefill_prefix(base.model, prefill)  # sets base.model.rope_deltas [P, 1]
    expand_prefix(base.model, cache, repeat_index(inputs["input_ids"].shape[0], G))  # [P*G] rows
    rows = {k: inputs[k].repeat_interleave(G, 0) for k in ("input_ids", "attention_mask")}
    rows[cache_keyword(base)] = cache
    return model.generate(**rows, generation_config=config, **extra)
