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
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class ForwardResult:
    """Outputs of :func:`policy_forward` (rows aligned with response tokens).

    Attributes:
        logp: [B, T] float32 log-prob of each response token (0 at padding); carries grad.
        entropy: [B, T] float32 entropy of softmax(logits / temperature) (0 at padding);
            carries grad.
        response_mask: [B, T] bool.
        image_tokens: layout of the image tokens (:class:`ImageTokens`).
        hidden: [B, T, D] last-layer hidden states at the rows ``P + t - 1``, or None.
        own_hidden: [B, T, D] last-layer hidden states at the positions ``P + t``, or None.
        image_hidden_mean: [B, D] float32 mean last-layer hidden state of the image tokens.
        image_attention: layer -> [B, T, N] (keys as requested, e.g. -1).
        response_attention: layer -> [B, T, T].
        own_image_attention: layer -> [B, T, N] detached attention of the query at
            ``P + t`` (layers of ``request.own_attention_layers``).
        masked_logp: [B, T] log-probs on the perturbed image (detached unless its
            perturbation asks for grad: PAPO's recompute option)
            (``request.masked_logp``; :mod:`visgrpo.attention.masked`), or None.
    """

    logp: Tensor
    entropy: Tensor
    response_mask: Tensor
    image_tokens: ImageTokens
    hidden: Tensor | None = None
    own_hidden: Tensor | None = None
    image_hidden_mean: Tensor | None = None
    image_attention: dict[int, Tensor] = field(default_factory=dict)
    response_attention: dict[int, Tensor] = field(default_factory=dict)
    own_image_attention: dict[int, Tensor] = field(default_factory=dict)
    masked_logp: Tensor | None = None

    def to_signals(self, **extra: Any) -> Signals:
        """Build a :class:`~visgrpo.data.signals.Signals` from this result plus ``extra`` fields.

        Signals get detached entropies and hidden states (credit signals are constants),
        attention and ``logp`` as computed (grad layers keep their graph; the caller
        detaches them for credit). ``extra`` supplies
        ``group_ids``, ``rewards``, ``evidence_*`` etc. and overrides any field here.
        """
        values = {
            "response_mask": self.response_mask,
            "image_mask": self.image_tokens.mask,
            "entropies": self.entropy.detach(),
            "hidden": None if self.hidden is None else self.hidden.detach(),
            "own_hidden": None if self.own_hidden is None else self.own_hidden.detach(),
            "image_hidden_mean": (
                None if self.image_hidden_mean is None else self.image_hidden_mean.detach()
            ),
            "image_attention": self.image_attention,
            "response_attention": self.response_attention,
            "own_image_attention": self.own_image_attention,
            "logp": self.logp,
            "masked_logp": self.masked_logp,
        }
        values.update(extra)
        names = {f.name for f in dataclasses.fields(Signals)}
        return Signals(**{k: v for k, v in values.items() if k in names})


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
) -> ForwardResult:
    """Run ONE forward of the policy and return every per-token signal requested.

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
            ``entropies``, ``own_attention_layers``) or None (log-probs and entropies only).
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
        :class:`ForwardResult`.
    """
    base = _base_model(model)
    cfg = base.config
    counts = {k: getattr(batch, k, None) if not isinstance(batch, Mapping) else batch.get(k)
              for k in ("group_ids", "pixel_counts", "image_counts")}
    batch = _as_dict(batch)
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    response_mask = batch["response_mask"].bool()  # [B, T]
    B, L = input_ids.shape
    T = response_mask.shape[1]
    P = _prompt_len(batch)
    if P < 1 or P + T != L:
        raise ValueError(f"batch: prompt_len {P} + response length {T} != sequence length {L}")
    dev = input_ids.device

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
    # why not to share the prompt's decoder work (None: share it)
    prefix_blocker = (shared_prefix_blocker(model, kwargs, input_ids, attention_mask, P, counts)
                      if share_prefix else "share_prefix=False")
    if (prefix_blocker is not None and share_images and kwargs.get("pixel_values") is not None
            and all(v is not None for v in counts.values()) and supports_encoder_outputs(base)):
        plan = shared_image_plan(counts["group_ids"], counts["pixel_counts"], counts["image_counts"])
        if plan is not None:
            kwargs["mm_encoder_outputs"] = shared_image_outputs(
                base, kwargs.pop("pixel_values"), kwargs["image_grid_thw"], plan
            )

    img_layers = _layers(request, "image_attention_layers")
    resp_layers = _layers(request, "response_attention_layers")
    grad_layers = _layers(request, "grad_attention_layers")
    own_layers = _layers(request, "own_attention_layers")
    probed = sorted(set(img_layers) | set(resp_layers) | set(grad_layers) | set(own_layers))
    # Own-position attention: probe T + 1 rows P-1 .. P+T-1 once; rows [:T] predict the
    # tokens, rows [1:] are the tokens' own positions (one extra query row per sample).
    R = T + 1 if own_layers else T
    rows = (P - 1 + torch.arange(R, device=dev)).expand(B, R)  # [B, R] row of token t
    query_mask = response_mask
    if own_layers:
        pad = response_mask.new_zeros(B, 1)
        query_mask = torch.cat([response_mask, pad], 1) | torch.cat([pad, response_mask], 1)  # [B, R]

    probe = None
    if probed:
        probe = AttentionProbe(
            base,
            probed,
            rows,
            tokens.positions,
            query_mask=query_mask,
            image_mask=tokens.mask,
            response_columns=resp_layers,
            grad_layers=grad_layers,
            chunk_size=probe_chunk,
        )
    if prefix_blocker is None:  # [B, T + 1, D] rows P-1 .., [n, P - 1, D] the groups' prompts
        window, prompt_hidden, first, row_group = shared_prefix_forward(
            base, kwargs, input_ids, attention_mask, P, counts, probe
        )
    else:
        with probe if probe is not None else contextlib.nullcontext():
            out = base.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
        prompt_hidden, first, row_group = out.last_hidden_state, None, None  # [B, L, D]
        window = prompt_hidden[:, P - 1 :]  # [B, T + 1, D]
    resp_hidden = window[:, :T]  # [B, T, D] rows P-1+t predicting the tokens
    logits = base.lm_head(resp_hidden)  # [B, T, V]
    labels = input_ids[:, P:].masked_fill(~response_mask, -100)  # [B, T]
    logp, entropy = token_logprobs_and_entropy(logits, labels, temperature, logprob_chunk)
    entropy = entropy * response_mask  # [B, T]

    result = ForwardResult(
        logp=logp, entropy=entropy, response_mask=response_mask, image_tokens=tokens
    )
    if request is not None and getattr(request, "hidden_states", False):
        result.hidden = resp_hidden
        result.own_hidden = window[:, 1:]  # [B, T, D] the tokens' own positions (a view)
        if first is None:
            result.image_hidden_mean = masked_mean_rows(prompt_hidden, tokens.positions, tokens.mask)
        else:  # image tokens are in the prefix: one mean per group, given to its rows
            means = masked_mean_rows(prompt_hidden, tokens.positions[first], tokens.mask[first])  # [n, D]
            result.image_hidden_mean = means.index_select(0, row_group)  # [B, D]
    if probe is not None:
        n = len(probe.decoder.layers)
        keep = response_mask[:, :, None]  # [B, T, 1]
        for i in set(img_layers) | set(grad_layers):
            attn = probe.image_attention[i % n]  # [B, R, N]
            result.image_attention[i] = attn if R == T else attn[:, :T] * keep
        for i in resp_layers:
            attn = probe.response_attention[i % n]  # [B, R, R]
            result.response_attention[i] = attn if R == T else attn[:, :T, :T] * keep
        for i in own_layers:
            result.own_image_attention[i] = probe.image_attention[i % n][:, 1:].detach() * keep
    perturbation = getattr(request, "masked_logp", None) if request is not None else None
    if perturbation is not None and batch.get("pixel_values") is None:
        result.masked_logp = logp.detach()  # no image to perturb (the authors' codes: same inputs)
    elif perturbation is not None:
        norm = image_norm or (None, None)
        result.masked_logp = masked_logprobs(
            lambda b, share: policy_forward(
                model, {**b, **counts}, None, temperature, logprob_chunk, probe_chunk,
                share_images=share and share_images, share_prefix=share and share_prefix,
            ).logp,
            batch, counts["group_ids"], counts["image_counts"], perturbation, pixel_layout(base, *norm), perturb_seed,
        )
    return result


__all__ = ["ForwardResult", "policy_forward"]
