"""Token log-probs and entropies from logits, chunked so full-vocab float32 stays small.

``log_softmax`` over a [B, T, V] bf16 tensor would materialise several [B, T, V] float32
tensors (the upcast, the log-softmax, and whatever autograd saves for backward). Here a
custom ``autograd.Function`` processes blocks of at most ``chunk_size`` rows (a row is one
(b, t) position): the forward upcasts one block to float32, computes ``logsumexp``, the
label log-prob and the entropy, and keeps only the per-row ``lse`` and entropy [B, T]; the
backward recomputes each block's softmax from the saved logits. So at any time only a few
[chunk_size, V] float32 buffers exist (plus the gradient of the logits, which autograd needs
anyway, in the logits' own dtype). Blocks never copy the whole logits tensor, so a
non-contiguous slice ``logits[:, P-1:P-1+T]`` of the model output is fine.

Math, per row with ``x = logits / temperature``, ``lp = x - logsumexp(x)``, ``p = exp(lp)``:
``logp = lp[label]``; ``H = -sum_v p_v lp_v``;
``dlogp/dx = onehot(label) - p``; ``dH/dx_v = -p_v (lp_v + H)`` (from ``dlse/dx = p``);
``dL/dlogits = (g_logp*(onehot - p) - g_H*p*(lp + H)) / temperature``.

Labels < 0 (e.g. -100 padding) are ignored: their log-prob is 0 with zero gradient (their
entropy is still computed). Not twice differentiable.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

# logp values below this have p == 0 exactly in float32; clamping keeps 0 * (-inf) out.
_LP_FLOOR = -1e30


def _blocks(B: int, T: int, chunk: int) -> Iterator[tuple[slice, slice]]:
    """(batch slice, time slice) blocks covering [B, T] with at most ``chunk`` rows each."""
    if T == 0 or B == 0:
        return
    if chunk >= T:
        k = max(1, chunk // T)
        for b0 in range(0, B, k):
            yield slice(b0, min(B, b0 + k)), slice(0, T)
    else:
        for b in range(B):
            for t0 in range(0, T, chunk):
                yield slice(b, b + 1), slice(t0, min(T, t0 + chunk))


def _block_logp(logits_blk: Tensor, temperature: float, lse: Tensor | None = None):
    """float32 log-softmax of one block (fresh buffer); returns (lp [k,t,V], lse [k,t])."""
    x = logits_blk.to(torch.float32, copy=True)  # [k, t, V]
    if temperature != 1.0:
        x.div_(temperature)
    if lse is None:
        lse = torch.logsumexp(x, dim=-1)  # [k, t]
    x.sub_(lse.unsqueeze(-1))  # [k, t, V] now log-probs
    return x, lse


class _TokenLogpEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, temperature, chunk_size, with_entropy):
        B, T, _ = logits.shape
        dev = logits.device
        logp = torch.zeros(B, T, dtype=torch.float32, device=dev)  # [B, T]
        ent = torch.zeros(B, T, dtype=torch.float32, device=dev)  # [B, T]
        lse_all = torch.zeros(B, T, dtype=torch.float32, device=dev)  # [B, T]
        valid = labels >= 0  # [B, T]
        safe = labels.clamp(min=0)  # [B, T]
        for bs, ts in _blocks(B, T, chunk_size):
            lp, lse = _block_logp(logits[bs, ts], temperature)  # [k, t, V], [k, t]
            lse_all[bs, ts] = lse
            logp[bs, ts] = lp.gather(-1, safe[bs, ts].unsqueeze(-1)).squeeze(-1)
            if with_entropy:
                lp.clamp_(min=_LP_FLOOR)
                ent[bs, ts] = -(lp.exp() * lp).sum(-1)
            del lp
        logp = torch.where(valid, logp, torch.zeros_like(logp))  # [B, T]
        ctx.save_for_backward(logits, safe, valid, lse_all, ent)
        ctx.temperature = temperature
        ctx.chunk_size = chunk_size
        ctx.with_entropy = with_entropy
        ctx.mark_non_differentiable(lse_all)
        return logp, ent, lse_all

    @staticmethod
    @once_differentiable
    def backward(ctx, g_logp, g_ent, _g_lse):
        logits, safe, valid, lse_all, ent = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        B, T, _ = logits.shape
        grad = torch.empty_like(logits, memory_format=torch.contiguous_format)  # [B, T, V]
        g_logp = torch.where(valid, g_logp, torch.zeros_like(g_logp)).to(torch.float32)
        g_ent = g_ent.to(torch.float32) if ctx.with_entropy else torch.zeros_like(g_logp)
        for bs, ts in _blocks(B, T, ctx.chunk_size):
            lp, _ = _block_logp(logits[bs, ts], ctx.temperature, lse_all[bs, ts])
            lp.clamp_(min=_LP_FLOOR)
            p = lp.exp()  # [k, t, V]
            gl = g_logp[bs, ts].unsqueeze(-1)  # [k, t, 1]
            # g = -p * (g_logp + g_H * (lp + H)) + onehot * g_logp
            lp.add_(ent[bs, ts].unsqueeze(-1)).mul_(g_ent[bs, ts].unsqueeze(-1)).add_(gl)
            lp.mul_(p).neg_()
            lp.scatter_add_(-1, safe[bs, ts].unsqueeze(-1), gl)
            if ctx.temperature != 1.0:
                lp.div_(ctx.temperature)
            grad[bs, ts] = lp.to(grad.dtype)
            del lp, p
        return grad, None, None, None, None


def _check(logits: Tensor, labels: Tensor, temperature: float, chunk_size: int) -> None:
    if logits.dim() != 3:
        raise ValueError(f"logits must be [B, T, V], got shape {tuple(logits.shape)}")
    if tuple(labels.shape) != tuple(logits.shape[:2]):
        raise ValueError(
            f"labels has shape {tuple(labels.shape)}, expected {tuple(logits.shape[:2])}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    if labels.numel() and int(labels.max()) >= logits.shape[-1]:
        raise ValueError(f"labels has id {int(labels.max())} >= vocabulary size {logits.shape[-1]}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")


def token_logprobs_and_entropy(
    logits: Tensor, labels: Tensor, temperature: float = 1.0, chunk_size: int = 1024
) -> tuple[Tensor, Tensor]:
    """Log-prob of each label and entropy of ``softmax(logits / temperature)``, chunked.

    Args:
        logits: [B, T, V] (bf16/fp16/fp32, any strides), row t predicts ``labels[:, t]``.
        labels: [B, T] integer token ids; ids < 0 are ignored (log-prob 0, no gradient).
        temperature: sampling temperature (> 0) applied before the softmax.
        chunk_size: maximum number of (b, t) rows upcast to float32 at once.

    Returns:
        (logp [B, T] float32, entropy [B, T] float32), both differentiable w.r.t. logits.
    """
    _check(logits, labels, temperature, chunk_size)
    logp, ent, _ = _TokenLogpEntropy.apply(logits, labels, float(temperature), chunk_size, True)
    return logp, ent


def selective_log_softmax(
    logits: Tensor, labels: Tensor, temperature: float = 1.0, chunk_size: int = 1024
) -> Tensor:
    """Chunked ``log_softmax(logits / temperature).gather(-1, labels)`` -> [B, T] float32.

    Same as ``token_logprobs_and_entropy`` without the entropy (cheaper forward/backward).
    """
    _check(logits, labels, temperature, chunk_size)
    logp, _, _ = _TokenLogpEntropy.apply(logits, labels, float(temperature), chunk_size, False)
    return logp
