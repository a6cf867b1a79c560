"""One teacher-forced policy forward giving log-probs, entropies, hidden states and attention.

docs/architecture.md, "One RL step", step 4: a single forward of the policy over
prompt + response serves the token log-probs, the entropies of the sampling distribution,
the last-layer hidden states (VGPO) and the attention probe's response-to-image attention
(SAYO, AT-RL, EASE), with autograd where the caller's context has it.

Layout: ``input_ids`` [B, L] is the prompt left-padded to P followed by the response
right-padded to T (L = P + T). Response token t sits at position ``P + t`` and is predicted
by row ``P + t - 1`` ("row of token t", docs/methods.md, Notation); every per-token signal
uses that row, except the own-position signals some authors' code reads (hidden states
and, on request, image attention at ``P + t`` itself: VGPO's and SAYO's conventions). The
lm_head is applied to those T rows only, never to all L (no [B, L, V] logits). Hidden
states are the decoder's final output (after its last norm), i.e. what
``output_hidden_states`` reports as the last layer.

The rows of a prompt group share the prompt: by default the decoder runs once per group on
it and each row continues from its group's KV cache (:mod:`visgrpo.attention.shared_prefix`),
and otherwise each group's images are still encoded once
(:mod:`visgrpo.attention.shared_images`); both give the plain forward's outputs and gradients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from visgrpo.attention.hidden import masked_mean_rows
from visgrpo.attention.locate import ImageTokens, locate_image_tokens
from visgrpo.attention.masked import masked_logprobs, pixel_layout
from visgrpo.attention.probe import AttentionProbe
from visgrpo.attention.shared_images import (
    shared_image_outputs,
    shared_image_plan,
    supports_encoder_outputs,
)
from visgrpo.attention.shared_prefix import shared_prefix_blocker, shared_prefix_forward
from visgrpo.data.signals import Signals
from visgrpo.models.lora import unwrap_peft
from visgrpo.objectives.logprobs import token_logprobs_and_entropy

_MODEL_KEYS = (
    "pixel_values",
    "image_grid_thw",
    "pixel_values_videos",
    "video_grid_thw",
    "second_per_grid_ts",
    "mm_token_type_ids",
)


def _base_model(model):
    base = unwrap_peft(model)
    if not (hasattr(base, "model") and hasattr(base, "lm_head")):
        raise ValueError(
            f"policy_forward needs a *ForConditionalGeneration model with .model and .lm_head, "
            f"got {type(base).__name__}"
        )
    return base


def _prompt_len(batch: dict) -> int:
    for key in ("prompt_len", "prompt_length", "P"):
        if key in batch:
            value = batch[key]
            return int(value.item() if isinstance(value, Tensor) else value)
    raise ValueError("batch needs 'prompt_len' (or 'prompt_length'): the left-padded prompt length")


def _as_dict(batch) -> dict:
    """A dict batch as is; a RolloutBatch-like object through its attributes."""
    if isinstance(batch, Mapping):
        return dict(batch)
    out = dict(batch.model_inputs()) if hasattr(batch, "model_inputs") else {}
    for key in ("input_ids", "attention_mask", "response_mask", "prompt_length", *_MODEL_KEYS):
        if key not in out and getattr(batch, key, None) is not None:
            out[key] = getattr(batch, key)
    return out


def _layers(request, name: str) -> list[int]:
    return [int(i) for i in (getattr(request, name, None) or ())] if request is not None else []


@dataclass
class _Inputs:
    """Step 1's output: the decoder's inputs and the batch's layout."""

    batch: dict  # the batch as a dict
    counts: dict  # group_ids [B], pixel_counts, image_counts (None when absent)
    input_ids: Tensor  # [B, L]
    attention_mask: Tensor  # [B, L]
    response_mask: Tensor  # [B, T] bool
    prompt_len: int  # P (L = P + T)
    tokens: ImageTokens  # layout of the image tokens
    kwargs: dict  # vision inputs for the decoder (maybe the shared images' encoder outputs)
    prefix_blocker: str | None  # why the prompt's decoder work is not shared (None: shared)


@dataclass
class _Probed:
    """The attention layers a request asks for (resolved, >= 0)."""

    image: list[int] = field(default_factory=list)
    response: list[int] = field(default_factory=list)
    grad: list[int] = field(default_factory=list)
    own: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, request) -> _Probed:
        return cls(*(_layers(request, f"{k}_attention_layers") for k in ("image", "response", "grad", "own")))

    @property
    def layers(self) -> list[int]:
        return sorted(set(self.image) | set(self.response) | set(self.grad) | set(self.own))


@dataclass
class _Decoded:
    """Step 2's output: the decoder's last hidden states around the response, and the probe."""

    window: Tensor  # [B, T + 1, D] rows P - 1 .. P + T - 1
    prompt_hidden: Tensor  # [B, L, D], or [n, P - 1, D] the groups' prompts (shared prefix)
    first: Tensor | None  # [n] first row of each group (shared prefix), else None
    row_group: Tensor | None  # [B] group of each row (shared prefix), else None
    probe: AttentionProbe | None


def _build_inputs(model, batch, share_images: bool = True, share_prefix: bool = True) -> _Inputs:
    """Step 1: check the layout, locate the image tokens, and prepare the decoder's vision
    inputs (``mm_token_type_ids`` derived when absent; each group's images encoded once when
    the prompt's decoder work is not shared but the images can be).

    Args: as :func:`policy_forward`.
    """
    base = _base_model(model)
    cfg = base.config
    counts = {k: getattr(batch, k, None) if not isinstance(batch, Mapping) else batch.get(k)
              for k in ("group_ids", "pixel_counts", "image_counts")}
    batch = _as_dict(batch)
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    response_mask = batch["response_mask"].bool()  # [B, T]
    L, T = input_ids.shape[1], response_mask.shape[1]
    P = _prompt_len(batch)
    if P < 1 or P + T != L:
        raise ValueError(f"batch: prompt_len {P} + response length {T} != sequence length {L}")

    merge = cfg.vision_config.spatial_merge_size
    tokens = locate_image_tokens(
        input_ids, attention_mask, cfg.image_token_id, batch.get("image_grid_thw"), merge
    )
    kwargs = {k: batch[k] for k in _MODEL_KEYS if batch.get(k) is not None}
    if "mm_token_type_ids" not in kwargs:
        mm = (input_ids == cfg.image_token_id).long()  # [B, L] 1 = image token
        video_id = getattr(cfg, "video_token_id", None)
        if video_id is not None:
            mm = mm.masked_fill(input_ids == video_id, 2)
        kwargs["mm_token_type_ids"] = mm
    prefix_blocker = (shared_prefix_blocker(model, kwargs, input_ids, attention_mask, P, counts)
                      if share_prefix else "share_prefix=False")
    if (prefix_blocker is not None and share_images and kwargs.get("pixel_values") is not None
            and all(v is not None for v in counts.values()) and supports_encoder_outputs(base)):
        plan = shared_image_plan(counts["group_ids"], counts["pixel_counts"], counts["image_counts"])
        if plan is not None:
            kwargs["mm_encoder_outputs"] = shared_image_outputs(
                base, kwargs.pop("pixel_values"), kwargs["image_grid_thw"], plan
            )
    return _Inputs(batch, counts, input_ids, attention_mask, response_mask, P, tokens, kwargs, prefix_blocker)


def _run_decoder(model, inputs: _Inputs, probed: _Probed, probe_chunk: int = 256) -> _Decoded:
    """Step 2: one decoder pass (shared-prefix or plain) with the attention probe on the
    ``probed`` layers; no lm_head.

    Own-position attention probes T + 1 query rows P - 1 .. P + T - 1 once: rows [:T]
    predict the tokens, rows [1:] are the tokens' own positions (one extra row per sample).
    """
    base = _base_model(model)
    B, T, P = inputs.response_mask.shape[0], inputs.response_mask.shape[1], inputs.prompt_len
    R = T + 1 if probed.own else T
    rows = (P - 1 + torch.arange(R, device=inputs.input_ids.device)).expand(B, R)  # [B, R] row of token t
    query_mask = inputs.response_mask
    if probed.own:
        pad = query_mask.new_zeros(B, 1)
        query_mask = torch.cat([query_mask, pad], 1) | torch.cat([pad, query_mask], 1)  # [B, R]
    probe = None
    if probed.layers:
        probe = AttentionProbe(
            base,
            probed.layers,
            rows,
            inputs.tokens.positions,
            query_mask=query_mask,
            image_mask=inputs.tokens.mask,
            response_columns=probed.response,
            grad_layers=probed.grad,
            chunk_size=probe_chunk,
        )
    if inputs.prefix_blocker is None:  # [B, T + 1, D] rows P-1 .., [n, P - 1, D] the groups' prompts
        window, prompt_hidden, first, row_group = shared_prefix_forward(
            base, inputs.kwargs, inputs.input_ids, inputs.attention_mask, P, inputs.counts, probe
        )
    else:
        with probe if probe is not None else contextlib.nullcontext():
            out = base.model(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask, use_cache=False,
                             **inputs.kwargs)
        prompt_hidden, first, row_group = out.last_hidden_state, None, None  # [B, L, D]
        window = prompt_hidden[:, P - 1 :]  # [B, T + 1, D]
    return _Decoded(window, prompt_hidden, first, row_group, probe)


def _collect_signals(
    model, inputs: _Inputs, decoded: _Decoded, probed: _Probed, request=None, temperature: float = 1.0,
    logprob_chunk: int = 1024,
) -> Signals:
    """Step 3: log-probs and entropies from the lm_head on the T rows that predict the
    response, then the hidden states and attention maps the request asks for.

    Returns:
        :class:`Signals` as computed (``rewards`` None; ``masked_logp`` filled by the caller).
    """
    base = _base_model(model)
    response_mask, tokens, window = inputs.response_mask, inputs.tokens, decoded.window
    T = response_mask.shape[1]
    resp_hidden = window[:, :T]  # [B, T, D] rows P-1+t predicting the tokens
    logits = base.lm_head(resp_hidden)  # [B, T, V]
    labels = inputs.input_ids[:, inputs.prompt_len :].masked_fill(~response_mask, -100)  # [B, T]
    logp, entropy = token_logprobs_and_entropy(logits, labels, temperature, logprob_chunk)
    signals = Signals(
        response_mask, inputs.counts["group_ids"], None, tokens.mask, entropies=entropy * response_mask, logp=logp
    )
    if request is not None and getattr(request, "hidden_states", False):
        signals.hidden = resp_hidden
        signals.own_hidden = window[:, 1:]  # [B, T, D] the tokens' own positions (a view)
        if decoded.first is None:
            signals.image_hidden_mean = masked_mean_rows(decoded.prompt_hidden, tokens.positions, tokens.mask)
        else:  # image tokens are in the prefix: one mean per group, given to its rows
            first = decoded.first
            means = masked_mean_rows(decoded.prompt_hidden, tokens.positions[first], tokens.mask[first])  # [n, D]
            signals.image_hidden_mean = means.index_select(0, decoded.row_group)  # [B, D]
    probe = decoded.probe
    if probe is not None:
        n = len(probe.decoder.layers)
        own = bool(probed.own)  # R = T + 1 query rows
        keep = response_mask[:, :, None]  # [B, T, 1]
        for i in set(probed.image) | set(probed.grad):
            attn = probe.image_attention[i % n]  # [B, R, N]
            signals.image_attention[i] = attn[:, :T] * keep if own else attn
        for i in probed.response:
            attn = probe.response_attention[i % n]  # [B, R, R]
            signals.response_attention[i] = attn[:, :T, :T] * keep if own else attn
        for i in probed.own:
            signals.own_image_attention[i] = probe.image_attention[i % n][:, 1:] * keep
    return signals


def policy_forward(
    model,
    batch: dict,
    request=None,
    temperature: float = 1.0,
    logprob_chunk: int = 1024,
    probe_chunk: int = 256,
    share_images: bool = True,
    share_prefix: bool = True,
    perturb_seed: int = 0,
    image_norm: tuple | None = None,
) -> Signals:
    """Run ONE forward of the policy and return every per-token signal requested.

    Three steps: :func:`_build_inputs`, :func:`_run_decoder`, :func:`_collect_signals`; then the
    masked-image log-probs when the request asks for them (one more forward).

    Args:
        model: Qwen2-VL / Qwen2.5-VL / Qwen3-VL ``*ForConditionalGeneration``, or a peft
            wrapper of one. Runs with or without grad as the caller's context says.
        batch: dict (or a ``RolloutBatch``) with ``input_ids`` [B, L], ``attention_mask``
            [B, L], ``response_mask`` [B, T] bool, ``prompt_len`` / ``prompt_length`` int P
            (L = P + T), and the processor's vision inputs
            (``pixel_values``, ``image_grid_thw``, optional ``mm_token_type_ids``; derived
            from ``input_ids`` when absent, since Qwen's 3D rope needs it).
        request: a ``SignalRequest`` (fields ``image_attention_layers``,
            ``response_attention_layers``, ``grad_attention_layers``, ``hidden_states``,
            ``entropies``, ``own_attention_layers``, ``masked_logp``) or None (log-probs and
            entropies only).
        temperature: sampling temperature for log-probs and entropies.
        logprob_chunk: rows per chunk of the log-softmax.
        probe_chunk: query rows per chunk of the attention probe.
        share_images: encode the images of each prompt group once (rows with the same
            ``group_ids`` share their prompt's images; needs ``group_ids``, ``pixel_counts``
            and ``image_counts`` in ``batch``); same outputs and gradients, G times less
            vision-tower work (see :mod:`visgrpo.attention.shared_images`).
        share_prefix: run the decoder once per prompt group on the prompt and continue
            each row from its group's KV cache (needs the same batch fields; see
            :mod:`visgrpo.attention.shared_prefix`, which also lists when the plain forward
            runs instead): same outputs and gradients, the prompt's decoder work done once
            per group instead of G times. It encodes each group's images once by itself.
        perturb_seed: the step's seed of the masked-image signal (``request.masked_logp``).
        image_norm: ``(image_mean, image_std)`` of the processor (default: the family's).

    Returns:
        :class:`~visgrpo.data.signals.Signals` with rows aligned with the response tokens:
        ``logp`` and ``entropies`` [B, T] always, the rest as requested, every tensor as
        computed (with the graph where the context has grad; the credit signals are its
        :meth:`~visgrpo.data.signals.Signals.detached` copy); ``group_ids`` from the batch
        (or None), ``rewards`` and the evidence fields None.
    """
    inputs = _build_inputs(model, batch, share_images, share_prefix)
    probed = _Probed.of(request)
    decoded = _run_decoder(model, inputs, probed, probe_chunk)
    signals = _collect_signals(model, inputs, decoded, probed, request, temperature, logprob_chunk)
    perturbation = getattr(request, "masked_logp", None) if request is not None else None
    if perturbation is not None and inputs.batch.get("pixel_values") is None:
        # no image to perturb (the authors' codes: same inputs): the log-probs as constants
        signals.masked_logp = signals.logp.detach()
    elif perturbation is not None:
        counts, norm = inputs.counts, image_norm or (None, None)
        signals.masked_logp = masked_logprobs(
            lambda b, share: policy_forward(
                model, {**b, **counts}, None, temperature, logprob_chunk, probe_chunk,
                share_images=share and share_images, share_prefix=share and share_prefix,
            ).logp,
            inputs.batch, counts["group_ids"], counts["image_counts"], perturbation,
            pixel_layout(_base_model(model), *norm), perturb_seed,
        )
    return signals


__all__ = ["policy_forward"]
