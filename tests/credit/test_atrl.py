"""AT-RL (arXiv 2602.11455, our specification): anchors, METIS clusters, load weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visgrpo.credit import ATRLCredit
from visgrpo.credit.atrl import (
    anchor_tokens,
    atrl_token_weights,
    connectivity,
    partition_response,
    response_graph,
)
from visgrpo.data.signals import Signals


def _two_block_case(n_block=16, c_a=0.3, c_b=0.4, n_img=4):
    """One response of 2 * n_block tokens: causal attention confined to each block; image
    attention mass c_a on block A (tokens 0..15), c_b on block B (16..31).
    """
    T = 2 * n_block
    ra = torch.zeros(1, T, T)
    for t in range(T):
        start = 0 if t < n_block else n_block
        ra[0, t, start : t + 1] = 1.0 / (t + 1 - start)
    c = torch.tensor([c_a] * n_block + [c_b] * n_block)
    attn = (c[:, None] / n_img).expand(T, n_img)[None].clone()  # [1, T, n_img]
    return attn, ra, torch.ones(1, n_img, dtype=torch.bool), torch.ones(1, T, dtype=torch.bool)


def test_anchors_are_15_percent_of_real_tokens():
    torch.manual_seed(0)
    c = torch.rand(3, 50)
    mask = torch.arange(50)[None, :] < torch.tensor([20, 40, 50])[:, None]
    anchors = anchor_tokens(c, mask)
    # ceil(0.15 n): 20 -> 3 (0.15 * 20 = 3.0000000000000004 in floats), 40 -> 6, 50 -> 8.
    assert anchors.sum(-1).tolist() == [3, 6, 8]
    assert not (anchors & ~mask).any()
    top3 = c[0, :20].topk(3).indices.sort().values
    assert anchors[0].nonzero().squeeze(-1).tolist() == top3.tolist()


def test_connectivity_is_image_mass_mean_over_layers():
    a1 = torch.tensor([[[0.1, 0.2, 0.5], [0.0, 0.1, 0.1]]])
    a2 = torch.tensor([[[0.3, 0.0, 0.5], [0.2, 0.1, 0.1]]])
    img = torch.tensor([[True, True, False]])  # the third column is not an image token
    c = connectivity([a1, a2], img, torch.tensor([[True, False]]))
    # Row 0: (0.3 + 0.3) / 2 = 0.3; row 1 is padding -> 0.
    torch.testing.assert_close(c, torch.tensor([[0.3, 0.0]]))


def test_metis_finds_the_two_blocks_and_weights_favour_the_high_connectivity_cluster():
    attn, ra, img, mask = _two_block_case()
    W, m = atrl_token_weights(attn, img, mask, ra)
    # Anchors: ceil(0.15 * 32) = 5 tokens, all in block B (c 0.4 > 0.3; ties by position).
    # load_A = 0.3 + 0/16; load_B = 0.4 + 5/16 = 0.7125; token-weighted mean = 0.50625.
    # W_A = 0.3 / 0.50625 = 0.592593, W_B = 0.7125 / 0.50625 = 1.407407 (inside [0.5, 2]).
    expected = torch.tensor([[0.3 / 0.50625] * 16 + [0.7125 / 0.50625] * 16])
    torch.testing.assert_close(W, expected)
    assert float(W.mean()) == pytest.approx(1.0, abs=1e-6)
    assert float(m["clusters_per_response"]) == 2.0
    assert float(m["anchor_share"]) == pytest.approx(5 / 32)


def test_weights_clamp_and_short_responses_are_one_cluster():
    attn, ra, img, mask = _two_block_case(c_a=0.05, c_b=0.5)
    W, _ = atrl_token_weights(attn, img, mask, ra)
    # load_A = 0.05, load_B = 0.5 + 0.3125 = 0.8125, mean = 0.43125:
    # W_A = 0.1159 -> clamped to 0.5; W_B = 1.884.
    assert W[0, :16].tolist() == pytest.approx([0.5] * 16)
    assert W[0, 16:].tolist() == pytest.approx([0.8125 / 0.43125] * 16, abs=1e-6)
    # 16 tokens <= cluster_size: K = 1, load / mean load = 1 everywhere (no METIS call).
    W16, m = atrl_token_weights(attn[:, :16], img, mask[:, :16], ra[:, :16, :16])
    torch.testing.assert_close(W16, torch.ones(1, 16))
    assert float(m["clusters_per_response"]) == 1.0


def test_ablation_switches():
    c = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0]])
    attn = c[..., None]  # [1, 5, 1]: one image token carrying mass c
    img = torch.ones(1, 1, dtype=torch.bool)
    mask = torch.tensor([[True, True, True, True, False]])
    # No clustering: W = c / mean c = c / 0.25 = [0.4 -> 0.5, 0.8, 1.2, 1.6]; padding 1.
    W, _ = atrl_token_weights(attn, img, mask, clustering=False)
    torch.testing.assert_close(W, torch.tensor([[0.5, 0.8, 1.2, 1.6, 1.0]]))
    # Anchors only: ceil(0.15 * 4) = 1 anchor (token 3): W = 1 there, 0 on the others.
    W, _ = atrl_token_weights(attn, img, mask, anchors_only=True)
    torch.testing.assert_close(W, torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0]]))


def test_graph_csr_and_metis_part_count():
    rng = np.random.default_rng(0)
    n = 50
    a = np.tril(rng.random((n, n)))
    a /= a.sum(1, keepdims=True)
    xadj, adjncy, ew = response_graph(a, top_k=8)
    assert xadj[0] == 0 and xadj[-1] == len(adjncy) == len(ew)
    edges = set()
    for u in range(n):
        nbrs = adjncy[xadj[u] : xadj[u + 1]]
        assert u not in nbrs and len(nbrs) >= 8  # top-8 neighbours, no self loop
        edges |= {(u, int(v)) for v in nbrs}
    assert all((v, u) in edges for u, v in edges)  # symmetric
    assert all((u, u + 1) in edges for u in range(n - 1))  # the sequence chain
    assert ew.min() >= 1 and ew.max() == 1000
    part = partition_response(a, cluster_size=16)
    assert sorted(set(part.tolist())) == [0, 1, 2, 3]  # K = ceil(50 / 16) = 4
    assert np.array_equal(part, partition_response(a, cluster_size=16))  # seeded: repeatable


def _reference_graph(a: np.ndarray, top_k: int, edge_scale: int = 1000):
    """The token graph by its definition, one edge at a time (no ties in ``a``)."""
    n = len(a)
    s = [[(float(a[i][j]) + float(a[j][i])) / 2 for j in range(n)] for i in range(n)]
    k = min(top_k, n - 1)
    edges = {(t, t + 1) for t in range(n - 1)} | {(t + 1, t) for t in range(n - 1)}
    for i in range(n):
        best = sorted((j for j in range(n) if j != i), key=lambda j: -s[i][j])[:k]
        edges |= {(i, j) for j in best} | {(j, i) for j in best}
    top = max((max(s[u][v], 0.0) for u, v in edges), default=0.0)
    adj = {u: sorted(v for x, v in edges if x == u) for u in range(n)}
    weight = {e: max(1, round(edge_scale * max(s[e[0]][e[1]], 0.0) / top)) for e in edges}
    return adj, weight


@pytest.mark.parametrize("n,top_k", [(1, 8), (2, 8), (5, 2), (9, 8), (40, 8), (40, 0), (40, 3)])
def test_graph_equals_edge_by_edge_reference(n, top_k):
    """CSR arrays (edges sorted per vertex, int64) equal the definition built edge by edge:
    the chain plus each token's top-k symmetrised links, both ways, deduplicated.
    """
    a = np.tril(np.random.default_rng(n + top_k).random((n, n))).astype(np.float32)
    xadj, adjncy, ew = response_graph(a, top_k=top_k)
    adj, weight = _reference_graph(a, top_k)
    assert xadj.dtype == adjncy.dtype == ew.dtype == np.int64
    assert xadj.tolist() == np.cumsum([0] + [len(adj[u]) for u in range(n)]).tolist()
    for u in range(n):
        nbrs = adjncy[xadj[u] : xadj[u + 1]].tolist()
        assert nbrs == adj[u]
        assert ew[xadj[u] : xadj[u + 1]].tolist() == [weight[(u, v)] for v in nbrs]


def test_graph_with_tied_attention_keeps_chain_and_k_links():
    """Uniform causal attention (every link ties): still k links per token, symmetric."""
    n, k = 12, 3
    a = np.tril(np.ones((n, n))) / np.arange(1, n + 1)[:, None]
    xadj, adjncy, ew = response_graph(a, top_k=k)
    edges = {(u, int(v)) for u in range(n) for v in adjncy[xadj[u] : xadj[u + 1]]}
    assert all((v, u) in edges for u, v in edges) and all((u, u) not in edges for u in range(n))
    assert all((u, u + 1) in edges for u in range(n - 1))
    assert all(xadj[u + 1] - xadj[u] >= k for u in range(n)) and ew.min() >= 1


def test_credit_class_scales_advantages_and_requests_middle_third():
    method = ATRLCredit()
    req = method.signal_request(num_layers=6)
    assert req.image_attention_layers == req.response_attention_layers == frozenset({2, 3})
    assert ATRLCredit(clustering=False).signal_request(6).response_attention_layers == frozenset()
    attn, ra, img, mask = _two_block_case()
    sig = Signals(mask, torch.zeros(1, dtype=torch.long), torch.ones(1), img,
                  image_attention={2: attn, 3: attn}, response_attention={2: ra, 3: ra})
    out, m = method.token_advantages(torch.tensor([-2.0]), sig)
    assert out[0, 0].item() == pytest.approx(-2.0 * 0.3 / 0.50625)
    assert out[0, -1].item() == pytest.approx(-2.0 * 0.7125 / 0.50625)
    assert float(m["weight_mean"]) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="anchor_frac"):
        ATRLCredit(anchor_frac=0.0)


def test_short_responses_warn_once_naming_cluster_size_and_lengths():
    import warnings

    method = ATRLCredit(cluster_size=16)
    method.signal_request(num_layers=6)
    attn, ra, img, _ = _two_block_case(n_block=4)  # 8-token responses <= 16: one cluster each
    mask = torch.tensor([[True] * 8, [True] * 6 + [False] * 2])
    sig = Signals(mask, torch.zeros(2, dtype=torch.long), torch.ones(2), img.expand(2, -1),
                  image_attention={k: attn.expand(2, -1, -1) for k in (2, 3)},
                  response_attention={k: ra.expand(2, -1, -1) for k in (2, 3)})
    with pytest.warns(UserWarning, match=r"cluster_size=16, response lengths 6-8 tokens, mean 7.0") as rec:
        out, m = method.token_advantages(torch.tensor([1.0, -1.0]), sig)
    assert len(rec) == 1 and float(m["clusters_per_response"]) == 1.0
    torch.testing.assert_close(out, torch.tensor([[1.0] * 8, [-1.0] * 8]))  # every weight is 1: a no-op
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: the second batch is silent
        method.token_advantages(torch.tensor([1.0, -1.0]), sig)
    # A response longer than cluster_size (32 tokens, 2 clusters): no warning.
    attn, ra, img, mask = _two_block_case()
    long_sig = Signals(mask, torch.zeros(1, dtype=torch.long), torch.ones(1), img,
                       image_attention={2: attn, 3: attn}, response_attention={2: ra, 3: ra})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh = ATRLCredit()
        fresh.signal_request(6)
        fresh.token_advantages(torch.tensor([1.0]), long_sig)
    assert "_warned" not in repr(method)
