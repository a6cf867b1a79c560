"""Attention probe: exact response-row attention on chosen columns, beside the SDPA kernel.

The probe is an attention function registered with transformers' ``AttentionInterface``
under :data:`PROBE_NAME`. While an :class:`AttentionProbe` is installed, the TEXT decoder
of the model uses it (only the text config's ``_attn_implementation`` is switched; the vision
tower keeps its own). Every text layer computes its output with transformers' own SDPA path
(``sdpa_attention_forward``), so outputs are unchanged. On the configured layers the probe
also computes, from the same post-RoPE query/key, the attention probabilities of the
requested query rows (response rows) over requested key columns (image tokens; optionally
the response rows' own positions):

    p[b, h, t, c] = exp(q_t . k_c * s - logsumexp_{j allowed(t)} (q_t . k_j * s))

with the denominator over ALL keys the row may see (the layer's causal + padding mask),
in query chunks of ``chunk_size`` rows, so the extra memory is O(rows x L) per chunk and
O(rows x cols) for the result, never O(L^2 x heads x layers) as with
``output_attentions=True``. In a forward that continues a KV cache (the shared-prefix
forward of :mod:`visgrpo.attention.forward`) the layer's queries are the last Lq of its L
keys; query rows are given as key positions either way. Grouped-query attention is
handled by grouping query heads per key/value head (no ``repeat_kv`` copy). Arithmetic is
float32.

On ``grad_layers`` the result carries autograd to the query/key (hence to q_proj/k_proj and
everything below), through a custom backward that recomputes each chunk's softmax (EASE,
docs/methods.md, EASE, "attention must carry gradient ... recomputed from the layer's
query/key"). With p_c the selected probabilities and g_c their incoming gradient, the
score gradient is ``ds_j = [j selected] g_j p_j - p_j * sum_c g_c p_c`` (softmax Jacobian),
then ``dq = s * ds @ k`` and ``dk = s * ds^T @ q``.

Gradient checkpointing (non-reentrant): a layer's forward is recomputed during backward,
usually after the probe context has exited. The probe keeps the first result of each layer
and saves its own backward tensors (the layer's query/key) outside the checkpoint's hooks,
so the recomputation matches whether or not the probe is still installed. Reentrant
checkpointing runs the first forward without grad: ``grad_layers`` get no gradient there.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from visgrpo.models.lora import unwrap_peft

PROBE_NAME = "visgrpo_probe"
_ATTR = "_visgrpo_probe"


def probe_attention_forward(module, query, key, value, attention_mask, **kwargs):
    """Attention function for the text decoder: SDPA output, plus the probe on probed layers.

    Signature of transformers' attention interface: ``query`` [B, H, L, d],
    ``key``/``value`` [B, Hkv, L, d] (post-RoPE), ``attention_mask`` the 4D boolean mask
    [B|1, 1, L, L] (True = attend) or ``None`` (plain causal).
    """
    out = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    probe = getattr(module, _ATTR, None)
    if probe is not None:
        probe._observe(module, query, key, attention_mask, kwargs.get("scaling"))
    return out


AttentionInterface.register(PROBE_NAME, probe_attention_forward)
AttentionMaskInterface.register(PROBE_NAME, sdpa_mask)


def _allowed_rows(attention_mask: Tensor | None, rows: Tensor, B: int, L: int, offset: int = 0) -> Tensor:
    """Mask of the query rows ``rows`` [B, c] (key positions; the mask's query index is
    ``rows - offset``): bool [B, 1, c, L] (True = visible), or the additive float rows of a
    float mask.
    """
    if attention_mask is None:  # plain causal: key j visible from row i iff j <= i
        return (torch.arange(L, device=rows.device)[None, None, :] <= rows[:, :, None])[:, None]
    if attention_mask.dim() != 4 or attention_mask.shape[-1] != L:
        raise ValueError(f"probe: unsupported attention mask shape {tuple(attention_mask.shape)}")
    m = attention_mask[:, 0].expand(B, -1, -1)  # [B, Lq, L]
    m = m.gather(1, (rows - offset)[:, :, None].expand(-1, -1, L))  # [B, c, L]
    return m[:, None] if m.dtype == torch.bool else m.to(torch.float32)[:, None]


def _chunk_probs(q_rows, key, mask, cols, scale):
    """Probabilities of one chunk. q_rows [B, Hkv, G, c, d], key [B, Hkv, L, d] (float32),
    mask [B, 1, c, L] (bool visible, or additive float), cols [B, C].
    Returns (sel [B, Hkv, G, c, C], p [B, Hkv, G, c, L]).
    """
    B, Hkv, G, c, d = q_rows.shape
    L = key.shape[2]
    # In place after the matmul: one [B, H, c, L] float32 buffer (plus small row stats).
    s = torch.matmul(q_rows.reshape(B, Hkv, G * c, d) * scale, key.transpose(-1, -2))
    s = s.view(B, Hkv, G, c, L)  # [B, Hkv, G, c, L] scores
    if mask.dtype == torch.bool:
        s.masked_fill_(~mask[:, :, None], float("-inf"))
    else:
        s.add_(mask[:, :, None])
    mx = s.amax(-1, keepdim=True)  # [B, Hkv, G, c, 1]
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))  # fully masked rows
    p = s.sub_(mx).exp_()  # unnormalised
    z = p.sum(-1, keepdim=True).clamp_(min=1.0)  # >= 1 on any row with a visible key
    p.div_(z)  # [B, Hkv, G, c, L] softmax over every visible key
    idx = cols[:, None, None, None, :].expand(B, Hkv, G, c, cols.shape[1])
    return p.gather(-1, idx), p


def _probe_forward(query, key, rows, cols, attention_mask, scale, chunk, mean_heads):
    """Chunked forward: [B, H, T, C] probabilities (or [B, 1, T, C] head mean)."""
    B, H, Lq, d = query.shape
    G = H // key.shape[1]
    offset = key.shape[2] - Lq  # the queries are the last Lq key positions
    k32 = key.to(torch.float32)  # [B, Hkv, L, d]
    out = []
    for t0 in range(0, rows.shape[1], chunk):
        r = rows[:, t0 : t0 + chunk]  # [B, c]
        c = r.shape[1]
        q = query.gather(2, (r - offset)[:, None, :, None].expand(B, H, c, d))  # [B, H, c, d]
        m = _allowed_rows(attention_mask, r, B, k32.shape[2], offset)  # [B, 1, c, L]
        sel, p = _chunk_probs(q.to(torch.float32).view(B, -1, G, c, d), k32, m, cols, scale)
        del p
        sel = sel.reshape(B, H, c, cols.shape[1])  # [B, H, c, C]
        out.append(sel.mean(1, keepdim=True) if mean_heads else sel)
    return torch.cat(out, dim=2)


class _ProbeFn(torch.autograd.Function):
    """Selected attention probabilities with a chunk-recomputing backward."""

    @staticmethod
    def forward(ctx, query, key, rows, cols, attention_mask, scale, chunk):
        ctx.save_for_backward(query, key, rows, cols)
        ctx.attention_mask, ctx.scale, ctx.chunk = attention_mask, scale, chunk
        return _probe_forward(
            query, key, rows, cols, attention_mask, scale, chunk, False
        )  # [B, H, T, C]

    @staticmethod
    def backward(ctx, grad):
        query, key, rows, cols = ctx.saved_tensors
        B, H, Lq, d = query.shape
        Hkv, L = key.shape[1], key.shape[2]
        offset = L - Lq
        G, C, scale = H // Hkv, cols.shape[1], ctx.scale
        k32 = key.to(torch.float32)  # [B, Hkv, L, d]
        dq = torch.zeros(query.shape, dtype=torch.float32, device=query.device)  # [B, H, Lq, d]
        dk = torch.zeros(key.shape, dtype=torch.float32, device=key.device)  # [B, Hkv, L, d]
        for t0 in range(0, rows.shape[1], ctx.chunk):
            r = rows[:, t0 : t0 + ctx.chunk]  # [B, c]
            c = r.shape[1]
            q = query.gather(2, (r - offset)[:, None, :, None].expand(B, H, c, d))
            q = q.to(torch.float32).view(B, Hkv, G, c, d)  # [B, Hkv, G, c, d]
            m = _allowed_rows(ctx.attention_mask, r, B, L, offset)  # [B, 1, c, L]
            sel, p = _chunk_probs(q, k32, m, cols, scale)
            g = grad[:, :, t0 : t0 + c].to(torch.float32).reshape(B, Hkv, G, c, C) * sel
            ds = -p * g.sum(-1, keepdim=True)  # [B, Hkv, G, c, L]
            ds.scatter_add_(-1, cols[:, None, None, None, :].expand(B, Hkv, G, c, C), g)
            ds = ds.view(B, Hkv, G * c, L) * scale
            dq_rows = torch.matmul(ds, k32).view(B, H, c, d)  # [B, H, c, d]
            dq.scatter_add_(2, (r - offset)[:, None, :, None].expand(B, H, c, d), dq_rows)
            dk += torch.matmul(ds.transpose(-1, -2), q.reshape(B, Hkv, G * c, d))  # [B, Hkv, L, d]
        return dq.to(query.dtype), dk.to(key.dtype), None, None, None, None, None


def probe_attention(
    query: Tensor,
    key: Tensor,
    attention_mask: Tensor | None,
    rows: Tensor,
    cols: Tensor,
    scale: float,
    chunk_size: int = 256,
    with_grad: bool = False,
    mean_heads: bool = False,
) -> Tensor:
    """Exact softmax attention of query ``rows`` over key ``cols`` (all heads).

    Args:
        query: [B, H, Lq, d] post-RoPE queries of the last Lq key positions (Lq < L: a
            forward continuing a KV cache); key: [B, Hkv, L, d] (H a multiple of Hkv).
        attention_mask: layer mask [B|1, 1, Lq, L] (bool True = attend, or additive float),
            or None for plain causal.
        rows: [B, T] long query positions (key positions, within the last Lq);
            cols: [B, C] long key positions.
        scale: softmax scale (``head_dim ** -0.5`` for Qwen).
        chunk_size: query rows per chunk.
        with_grad: differentiable w.r.t. query and key (custom recomputing backward).
        mean_heads: average over the H query heads.

    Returns:
        [B, H, T, C] float32 probabilities (denominator over every visible key), or
        [B, T, C] with ``mean_heads``.
    """
    L = key.shape[2]
    first = L - query.shape[2]  # position of the first query
    if rows.numel() and (int(rows.min()) < first or int(rows.max()) >= L):
        raise ValueError(f"probe: query positions outside [{first}, {L})")
    if cols.numel() and (int(cols.min()) < 0 or int(cols.max()) >= L):
        raise ValueError(f"probe: key positions outside [0, {L})")
    if with_grad and torch.is_grad_enabled():
        out = _ProbeFn.apply(
            query, key, rows, cols, attention_mask, scale, chunk_size
        )  # [B, H, T, C]
        return out.mean(1) if mean_heads else out
    with torch.no_grad():
        out = _probe_forward(query, key, rows, cols, attention_mask, scale, chunk_size, mean_heads)
    return out[:, 0] if mean_heads else out


def text_decoder(model):
    """The text decoder (``*TextModel``) of a Qwen-VL model, a peft wrapper of one, or itself."""
    m = unwrap_peft(model)
    for path in ("model.language_model", "language_model", "model"):
        cur = m
        for name in path.split("."):
            cur = getattr(cur, name, None)
        if cur is not None and hasattr(cur, "layers") and hasattr(cur, "config"):
            return cur
    if hasattr(m, "layers") and hasattr(m, "config"):
        return m
    raise ValueError(f"cannot find the text decoder of {type(m).__name__}")


def _identity(t):
    return t


class AttentionProbe:
    """Context manager installing the probe on a model's text decoder for the forwards inside.

    After a forward, ``image_attention[layer]`` holds [B, T, N] (or [B, H, T, N] with
    ``per_head``) attention of query row t over image token n, and, when asked,
    ``response_attention[layer]`` [B, T, T] (or [B, H, T, T]) over the query rows' own
    positions (node t = position ``query_positions[:, t]`` as both row and column, so the
    matrix is lower-triangular). Invalid rows/columns (``query_mask`` / ``image_mask``
    False) are 0. Tensors are detached unless the layer is in ``grad_layers``.

    Args:
        model: a Qwen-VL ``*ForConditionalGeneration`` (or peft wrapper, or text model).
        layers: decoder layer indices to probe (negative counts from the end).
        query_positions: [B, T] long query rows (response row t = ``P + t - 1``).
        image_positions: [B, N] long key columns (image-token positions, padded).
        query_mask: [B, T] bool valid rows (default all).
        image_mask: [B, N] bool valid columns (default all).
        response_columns: also compute row-to-row attention: True (all probed layers),
            False, or an iterable of layer indices.
        grad_layers: layers whose attention keeps autograd (must be among ``layers``).
        chunk_size: query rows per chunk.
        per_head: keep the head axis instead of averaging over heads.
    """

    def __init__(
        self,
        model,
        layers: Iterable[int],
        query_positions: Tensor,
        image_positions: Tensor,
        query_mask: Tensor | None = None,
        image_mask: Tensor | None = None,
        response_columns: bool | Iterable[int] = False,
        grad_layers: Iterable[int] = (),
        chunk_size: int = 256,
        per_head: bool = False,
    ):
        self.decoder = text_decoder(model)
        n = len(self.decoder.layers)
        self.layers = {self._norm(i, n, "layers") for i in layers}
        if response_columns is True:
            self.response_layers = set(self.layers)
        elif response_columns is False:
            self.response_layers = set()
        else:
            self.response_layers = {self._norm(i, n, "response_columns") for i in response_columns}
        self.grad_layers = {self._norm(i, n, "grad_layers") for i in grad_layers}
        if not (self.response_layers | self.grad_layers) <= self.layers:
            raise ValueError(
                "probe: response_columns / grad_layers must be among the probed layers"
            )
        if query_positions.dim() != 2 or image_positions.dim() != 2:
            raise ValueError("probe: query_positions must be [B, T] and image_positions [B, N]")
        if image_positions.shape[0] != query_positions.shape[0]:
            raise ValueError("probe: query_positions and image_positions differ in batch size")
        if chunk_size < 1:
            raise ValueError(f"probe: chunk_size must be >= 1, got {chunk_size}")
        self.rows = query_positions.long()
        self.cols = image_positions.long()
        self.query_mask = (
            torch.ones_like(self.rows, dtype=torch.bool)
            if query_mask is None
            else query_mask.bool()
        )
        self.image_mask = (
            torch.ones_like(self.cols, dtype=torch.bool)
            if image_mask is None
            else image_mask.bool()
        )
        if self.query_mask.shape != self.rows.shape or self.image_mask.shape != self.cols.shape:
            raise ValueError("probe: query_mask / image_mask shapes must match the positions")
        self.chunk_size, self.per_head = chunk_size, per_head
        self.image_attention: dict[int, Tensor] = {}
        self.response_attention: dict[int, Tensor] = {}
        self._saved_impl = None

    @staticmethod
    def _norm(i: int, n: int, what: str) -> int:
        if not -n <= int(i) < n:
            raise ValueError(f"probe: {what} index {i} out of range for {n} decoder layers")
        return int(i) % n

    def reset(self) -> None:
        """Forget the collected tensors (call between forwards inside one context)."""
        self.image_attention.clear()
        self.response_attention.clear()

    def __enter__(self) -> AttentionProbe:
        cfg = self.decoder.config
        self._saved_impl = cfg._attn_implementation_internal
        cfg._attn_implementation_internal = PROBE_NAME
        for layer in self.decoder.layers:
            attn = layer.self_attn
            setattr(attn, _ATTR, self if attn.layer_idx in self.layers else None)
        return self

    def __exit__(self, *exc) -> None:
        self.decoder.config._attn_implementation_internal = self._saved_impl
        for layer in self.decoder.layers:
            if hasattr(layer.self_attn, _ATTR):
                delattr(layer.self_attn, _ATTR)

    def _observe(self, module, query: Tensor, key: Tensor, attention_mask, scaling) -> None:
        idx = module.layer_idx
        want_resp = idx in self.response_layers
        cols = torch.cat([self.cols, self.rows], 1) if want_resp else self.cols  # [B, C]
        dev = query.device
        rows, cols = self.rows.to(dev), cols.to(dev)
        scale = float(scaling) if scaling is not None else query.shape[-1] ** -0.5
        if idx in self.image_attention:  # recomputation under gradient checkpointing
            return
        # Identity saved-tensor hooks: what the probe saves for backward bypasses an
        # enclosing checkpoint's hooks, so its recomputation (with or without the probe
        # installed) sees the same saved tensors as the original forward.
        with torch.autograd.graph.saved_tensors_hooks(_identity, _identity):
            attn = probe_attention(
                query,
                key,
                attention_mask,
                rows,
                cols,
                scale,
                self.chunk_size,
                with_grad=idx in self.grad_layers,
                mean_heads=not self.per_head,
            )  # [B, (H,) T, C]
            valid = (
                self.query_mask.to(dev)[:, :, None]
                & torch.cat(
                    [self.image_mask, self.query_mask] if want_resp else [self.image_mask], 1
                ).to(dev)[:, None, :]
            )  # [B, T, C]
            if self.per_head:
                valid = valid[:, None]
            attn = attn * valid
        N = self.cols.shape[1]
        self.image_attention[idx] = attn[..., :N]
        if want_resp:
            self.response_attention[idx] = attn[..., N:]
