"""AT-RL: anchor-token credit assignment (arXiv 2602.11455; docs/methods.md, AT-RL).

No code has been released. What is certain: about 15% of response tokens are "perceptual
anchors" with high cross-modal attention connectivity; tokens are grouped by METIS graph
partitioning of the attention topology; a per-cluster "perceptual load" weight multiplies
the advantage, ``A[i,t] = W(C_k) * A_i`` for ``t in C_k``.

Everything else is OUR SPECIFICATION (docs/methods.md, AT-RL):

* connectivity ``c[i,t]`` = attention mass of row t on the image tokens (head mean),
  averaged over the configured layers (default: the middle third of the decoder);
* anchors = top ``anchor_frac`` (0.15) of the real tokens by ``c`` (``ceil`` with a 1e-6
  tolerance, ties by position);
* graph of one response: symmetrised response-to-response attention ``S = (A + A^T)/2``
  (mean over the same layers), each token linked to its ``top_k`` (8) strongest neighbours
  plus the sequence chain ``(t, t+1)``; METIS integer edge weights are
  ``max(1, round(edge_scale * S / max S))``; ``K = ceil(n / cluster_size)`` parts (16),
  ``K = 1`` (no METIS call) when ``n <= cluster_size``;
* perceptual load of a cluster = mean ``c`` of its tokens + its fraction of anchors;
  ``W_k = load_k / mean_load`` where ``mean_load`` is the TOKEN-weighted mean of the loads
  (``sum_k n_k load_k / n``), so before clamping the mean weight over the tokens is exactly
  1; then ``W`` is clamped to [0.5, 2.0];
* switches: ``anchors_only`` gives ``W = 1`` on anchors and 0 elsewhere (the anchors keep
  the plain advantage; nothing else is trained); ``clustering=False`` gives each token
  ``W = c / mean_t c`` (clamped), without the graph;
* padding keeps the incoming advantage.

The graph and METIS run per response in a Python loop (METIS is C; the CSR adjacency is
built with vectorised numpy, a handful of array calls per response); connectivity, anchors
and the weights are vectorised.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor

from visgrpo.credit.base import CREDIT_METHODS, CreditMethod, Metrics, top_fraction_mask
from visgrpo.data.signals import SignalRequest, Signals


def connectivity(image_attention: Tensor | list[Tensor], image_mask: Tensor, response_mask: Tensor) -> Tensor:
    """``c`` [B, T]: attention mass of each response row on the valid image tokens, mean
    over layers (a list of [B, T, N] or one [B, T, N] map); 0 at padding.
    """
    maps = image_attention if isinstance(image_attention, (list, tuple)) else [image_attention]
    img = image_mask.bool()[:, None, :]  # [B, 1, N]
    c = torch.stack([(a.detach().float() * img).sum(-1) for a in maps]).mean(0)  # [B, T]
    return c.masked_fill(~response_mask.bool(), 0.0)


def anchor_tokens(c: Tensor, response_mask: Tensor, anchor_frac: float = 0.15) -> Tensor:
    """[B, T] bool: the top ``anchor_frac`` of each response's real tokens by connectivity."""
    anchors, _ = top_fraction_mask(c, response_mask, anchor_frac)
    return anchors


def response_graph(attn: np.ndarray, top_k: int = 8,
                   edge_scale: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR adjacency of one response's token graph (vectorised numpy).

    Args:
        attn: [n, n] response-to-response attention of the real tokens (rows = queries).
        top_k: strongest neighbours kept per token (by symmetrised attention).
        edge_scale: integer weight of the strongest edge.

    Returns:
        ``(xadj [n+1], adjncy [E], eweights [E])`` int64, symmetric, no self loops, each
        vertex's neighbours in increasing order.
    """
    n = attn.shape[0]
    sym = (attn + attn.T) / 2.0  # [n, n]
    np.fill_diagonal(sym, -np.inf)  # never a neighbour of itself
    k = min(top_k, n - 1)
    chain = np.arange(n - 1, dtype=np.int64)
    # Directed edges as keys u * n + v: the chain both ways, then the top-k links both ways.
    parts = [chain * (n + 1) + 1, chain * (n + 1) + n]
    if k > 0:
        nbr = np.argpartition(-sym, k - 1, axis=1)[:, :k].astype(np.int64)  # [n, k]
        rows = np.arange(n, dtype=np.int64)[:, None]  # [n, 1]
        parts += [(rows * n + nbr).ravel(), (nbr * n + rows).ravel()]
    key = np.concatenate(parts)
    key.sort()
    key = np.concatenate((key[:1], key[1:][key[1:] != key[:-1]]))  # deduplicated, sorted by (u, v)
    u, v = np.divmod(key, n)
    w = np.clip(sym[u, v], 0.0, None)  # u != v: off-diagonal entries only
    top = w.max() if w.size else 0.0
    weights = np.maximum(1, np.rint(edge_scale * w / top)) if top > 0 else np.ones(u.shape)
    xadj = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(u, minlength=n), out=xadj[1:])
    return xadj, v, weights.astype(np.int64)


def partition_response(attn: np.ndarray, cluster_size: int = 16, top_k: int = 8, edge_scale: int = 1000,
                       seed: int = 0) -> np.ndarray:
    """Cluster index [n] of each real token: METIS into ``ceil(n / cluster_size)`` parts
    (all zeros when that is 1).
    """
    n = attn.shape[0]
    K = math.ceil(n / cluster_size)
    if K <= 1:
        return np.zeros(n, dtype=np.int64)
    import pymetis

    xadj, adjncy, eweights = response_graph(attn, top_k, edge_scale)
    part = pymetis.part_graph(
        K, pymetis.CSRAdjacency(xadj, adjncy), eweights=eweights, options=pymetis.Options(seed=seed)
    )
    return np.asarray(part.vertex_part, dtype=np.int64)


def cluster_weights(
    c: Tensor, anchors: Tensor, clusters: Tensor, response_mask: Tensor, w_min: float = 0.5, w_max: float = 2.0
) -> tuple[Tensor, Tensor]:
    """Perceptual-load weight per token [B, T] from cluster labels (vectorised).

    Args:
        c: [B, T] connectivity.
        anchors: [B, T] bool anchors.
        clusters: [B, T] long cluster index within each response (any value at padding).
        response_mask: [B, T] bool.
        w_min, w_max: clamp of the weight.

    Returns:
        ``(W [B, T] (1 at padding), number of non-empty clusters per response [B])``.
    """
    mask = response_mask.bool()
    B, T = c.shape
    K = int(clusters[mask].max()) + 1 if bool(mask.any()) else 1
    flat = (torch.arange(B, device=c.device)[:, None] * K + clusters.clamp(0, K - 1)).masked_fill(~mask, B * K)
    flat = flat.reshape(-1)  # [B*T], padding -> overflow bin B*K
    maskf = mask.float().reshape(-1)
    size = torch.zeros(B * K + 1, device=c.device).scatter_add(0, flat, maskf)  # [B*K+1]
    c_sum = torch.zeros(B * K + 1, device=c.device).scatter_add(0, flat, c.float().reshape(-1) * maskf)
    a_sum = torch.zeros(B * K + 1, device=c.device).scatter_add(0, flat, anchors.float().reshape(-1) * maskf)
    load = (c_sum + a_sum) / size.clamp_min(1.0)  # [B*K+1] mean c + anchor fraction
    load_tok = load[flat].reshape(B, T)  # [B, T]
    n = mask.sum(-1, keepdim=True).clamp_min(1).float()  # [B, 1]
    mean_load = (load_tok * mask).sum(-1, keepdim=True) / n  # [B, 1] token-weighted
    W = torch.where(mean_load > 0, load_tok / mean_load.clamp_min(1e-30), torch.ones_like(load_tok))
    W = torch.where(mask, W.clamp(w_min, w_max), torch.ones_like(W))  # [B, T]
    n_clusters = (size[: B * K].reshape(B, K) > 0).sum(-1)  # [B]
    return W, n_clusters


def atrl_token_weights(
    image_attention: Tensor | list[Tensor],
    image_mask: Tensor,
    response_mask: Tensor,
    response_attention: Tensor | None = None,
    anchor_frac: float = 0.15,
    top_k: int = 8,
    cluster_size: int = 16,
    w_min: float = 0.5,
    w_max: float = 2.0,
    anchors_only: bool = False,
    clustering: bool = True,
    edge_scale: int = 1000,
    seed: int = 0,
) -> tuple[Tensor, Metrics]:
    """AT-RL token weights ``W`` [B, T] (1 at padding) and metrics.

    Args:
        image_attention: [B, T, N] (or a list over layers) response-to-image attention.
        image_mask: [B, N] bool.
        response_mask: [B, T] bool.
        response_attention: [B, T, T] response-to-response attention (layer mean); needed
            when ``clustering`` and not ``anchors_only``.
        anchor_frac, top_k, cluster_size, w_min, w_max, anchors_only, clustering,
        edge_scale, seed: see :class:`ATRLCredit`.
    """
    mask = response_mask.bool()
    c = connectivity(image_attention, image_mask, mask)  # [B, T]
    anchors = anchor_tokens(c, mask, anchor_frac)  # [B, T]
    n_clusters = mask.sum(-1).clamp_max(1)  # [B]
    if anchors_only:
        W = torch.where(mask, anchors.float(), torch.ones_like(c))  # [B, T]
    elif not clustering:
        n = mask.sum(-1, keepdim=True).clamp_min(1).float()  # [B, 1]
        mean_c = c.sum(-1, keepdim=True) / n  # [B, 1]
        W = torch.where(mean_c > 0, c / mean_c.clamp_min(1e-30), torch.ones_like(c))
        W = torch.where(mask, W.clamp(w_min, w_max), torch.ones_like(W))  # [B, T]
    else:
        if response_attention is None:
            raise ValueError("AT-RL clustering needs response_attention [B, T, T] (None given)")
        ra = response_attention.detach().float().cpu().numpy()  # [B, T, T]
        m_np = mask.cpu().numpy()  # [B, T]
        clusters_np = np.zeros(m_np.shape, dtype=np.int64)  # [B, T]
        for i in range(m_np.shape[0]):
            idx = np.flatnonzero(m_np[i])
            if idx.size > cluster_size:
                n = idx.size  # real tokens as a prefix (right padding): a view, no gather
                sub = ra[i, :n, :n] if idx[-1] == n - 1 else ra[i][np.ix_(idx, idx)]  # [n, n]
                clusters_np[i, idx] = partition_response(sub, cluster_size, top_k, edge_scale, seed)
        clusters = torch.from_numpy(clusters_np).to(mask.device)  # [B, T]
        W, n_clusters = cluster_weights(c, anchors, clusters, mask, w_min, w_max)
    maskf = mask.float()
    tokens = maskf.sum().clamp_min(1.0)
    af = anchors.float()
    n_anchor = af.sum().clamp_min(1.0)
    n_other = (maskf - af).sum().clamp_min(1.0)
    metrics: Metrics = {
        "weight_mean": (W * maskf).sum() / tokens,
        "weight_min": W.masked_fill(~mask, float("inf")).min() if bool(mask.any()) else W.new_ones(()),
        "weight_max": W.masked_fill(~mask, float("-inf")).max() if bool(mask.any()) else W.new_ones(()),
        "anchor_share": af.sum() / tokens,
        "connectivity_anchor": (c * af).sum() / n_anchor,
        "connectivity_other": (c * (maskf - af)).sum() / n_other,
        "clusters_per_response": n_clusters.float().mean(),
    }
    return W, metrics


@CREDIT_METHODS.register("atrl")
class ATRLCredit(CreditMethod):
    """AT-RL (arXiv 2602.11455; our specification, see the module docstring).

    Args:
        layers: decoder layers of the connectivity and the graph (default the middle third).
        anchor_frac: fraction of real tokens that are anchors (paper: about 15%).
        top_k: neighbours per token in the attention graph (ours: 8).
        cluster_size: tokens per METIS part, ``K = ceil(n / cluster_size)`` (ours: 16).
        w_min: lower clamp of the cluster weight (ours: 0.5).
        w_max: upper clamp of the cluster weight (ours: 2.0).
        anchors_only: ablation: W = 1 on anchors, 0 elsewhere.
        clustering: False = per-token weight ``c / mean c`` without the graph.
        edge_scale: integer METIS weight of a response's strongest edge.
        seed: METIS seed (partitions are deterministic for a given seed).
    """

    name = "atrl"

    def __init__(
        self,
        layers: int | str | list[int | str] = "middle_third",
        anchor_frac: float = 0.15,
        top_k: int = 8,
        cluster_size: int = 16,
        w_min: float = 0.5,
        w_max: float = 2.0,
        anchors_only: bool = False,
        clustering: bool = True,
        edge_scale: int = 1000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 < anchor_frac <= 1.0 or cluster_size < 1 or top_k < 0:
            raise ValueError(
                f"ATRLCredit: need 0 < anchor_frac <= 1, cluster_size >= 1, top_k >= 0 "
                f"(got {anchor_frac}, {cluster_size}, {top_k})"
            )
        self.layers, self.anchor_frac, self.top_k, self.cluster_size = layers, anchor_frac, top_k, cluster_size
        self.w_min, self.w_max = w_min, w_max
        self.anchors_only, self.clustering = anchors_only, clustering
        self.edge_scale, self.seed = edge_scale, seed
        self._warned_single_cluster = False  # see _warn_if_single_cluster

    @property
    def uses_graph(self) -> bool:
        return self.clustering and not self.anchors_only

    def request(self) -> SignalRequest:
        layers = frozenset(self.resolve(self.layers))
        return SignalRequest(
            image_attention_layers=layers,
            response_attention_layers=layers if self.uses_graph else frozenset(),
        )

    def token_advantages(self, advantages: Tensor, signals: Signals) -> tuple[Tensor, Metrics]:
        layers = self.resolve(self.layers)
        mask = signals.response_mask.bool()
        if advantages.dim() == 1:
            advantages = advantages[:, None].expand(mask.shape)  # [B, T]
        W, metrics = atrl_token_weights(
            signals.layer_maps("image_attention", layers),
            signals.image_mask,
            mask,
            signals.mean_response_attention(layers) if self.uses_graph else None,
            anchor_frac=self.anchor_frac,
            top_k=self.top_k,
            cluster_size=self.cluster_size,
            w_min=self.w_min,
            w_max=self.w_max,
            anchors_only=self.anchors_only,
            clustering=self.clustering,
            edge_scale=self.edge_scale,
            seed=self.seed,
        )
        out = torch.where(mask, advantages * W.to(advantages.dtype), advantages)  # [B, T]
        self._warn_if_single_cluster(mask)
        return out, metrics

    def target_metrics(self, signals: Signals) -> Metrics:
        """AT-RL's target: :func:`atrl_token_weights` with its layers, clustering and cluster
        size: ``clusters_per_response``, ``anchor_share`` and ``weight_std``, the standard
        deviation of the weights over real tokens (0 when it cannot act, e.g. one cluster
        per response).
        """
        layers = self.resolve(self.layers)
        mask = signals.response_mask.bool()
        W, m = atrl_token_weights(
            signals.layer_maps("image_attention", layers), signals.image_mask, mask,
            signals.mean_response_attention(layers) if self.uses_graph else None,
            anchor_frac=self.anchor_frac, top_k=self.top_k, cluster_size=self.cluster_size,
            w_min=self.w_min, w_max=self.w_max, anchors_only=self.anchors_only, clustering=self.clustering,
            edge_scale=self.edge_scale, seed=self.seed,
        )
        real = W[mask].double()
        std = real.std(unbiased=False) if real.numel() else real.new_zeros(())
        return {"clusters_per_response": m["clusters_per_response"], "anchor_share": m["anchor_share"],
                "weight_std": std.float()}

    def _warn_if_single_cluster(self, mask: Tensor) -> None:
        """Warn once when no response is longer than ``cluster_size``: every response is one
        cluster, every weight is exactly 1 and AT-RL is a no-op.
        """
        lengths = mask.sum(-1)  # [B]
        if self._warned_single_cluster or not self.uses_graph or not bool((lengths > 0).any()):
            return
        if int(lengths.max()) <= self.cluster_size:
            self._warned_single_cluster = True
            real = lengths[lengths > 0].float()
            warnings.warn(
                f"AT-RL: every response is a single cluster (cluster_size={self.cluster_size}, response lengths "
                f"{int(real.min())}-{int(real.max())} tokens, mean {float(real.mean()):.1f}): every weight is 1 and "
                "the method does nothing; lower credit cluster_size below the response length or use longer "
                "responses. (Warned once.)",
                stacklevel=2,
            )


__all__ = [
    "ATRLCredit",
    "anchor_tokens",
    "atrl_token_weights",
    "cluster_weights",
    "connectivity",
    "partition_response",
    "response_graph",
]
