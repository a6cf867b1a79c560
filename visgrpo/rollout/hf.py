"""Rollouts with Hugging Face ``generate`` (the default engine; CPU and GPU, plain or peft).

``generate`` is called once per batch with ``num_return_sequences = G``. In transformers 5
the vision tower encodes each image once and ``_expand_multimodal_outputs`` repeats each
prompt's whole image group G times, which is the layout of ``RolloutBatch.pixel_values``
(prompt i's pixel rows repeated for each of its G responses); tests/rollout/test_hf.py
checks that teacher-forced logits of the batch reproduce the generation logits.
"""

from __future__ import annotations

import contextlib

import torch

from visgrpo.data.batch import PromptBatch, RolloutBatch
from visgrpo.rollout.assemble import assemble_rollout, encode_prompts
from visgrpo.rollout.base import ROLLOUT_ENGINES, SamplingConfig
from visgrpo.rollout.vision import eos_token_ids, vision_token_ids


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


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
    """

    def __init__(
        self,
        on_vision_token: str = "mask",
        return_logits: bool = False,
        generate_kwargs: dict | None = None,
    ) -> None:
        if on_vision_token not in ("mask", "reject"):
            raise ValueError(f"on_vision_token must be 'mask' or 'reject', got {on_vision_token!r}")
        self.on_vision_token = on_vision_token
        self.return_logits = return_logits
        self.generate_kwargs = dict(generate_kwargs or {})

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
        config = self.generation_config(
            sampling, eos, tok.pad_token_id, n_return, suppress=vision_token_ids(tok)
        )
        inputs = {k: v.to(device) for k, v in enc.items()}
        extra = dict(self.generate_kwargs)
        if sampling.stop_strings:
            extra["tokenizer"] = tok
        with eval_mode(model), seeded(seed, device):
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
