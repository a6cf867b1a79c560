"""SAYO and VGPO defaults against line-by-line transcriptions of the authors' code.

Random ragged batches (shuffled group order, one-token responses, all-equal rewards) and
one real tiny-model forward that checks the position conventions on real hidden states
and attention (docs/methods.md, "Departures from the authors' code").
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from experiments.fidelity.references import sayo as sayo_ref
from experiments.fidelity.references import vgpo as vgpo_ref
from tests.attention import conftest as _conf
from visgrpo.credit import SAYOCredit, VGPOCredit
from visgrpo.credit.sayo import sayo_attention_reward
from visgrpo.credit.vgpo import focus_gate, normalised_position
from visgrpo.data.signals import SignalRequest, Signals


def _lengths(gen, B, T):
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0], lengths[1] = T, 1  # a full-length and a one-token response
    return lengths


def _vgpo_case(seed, B=8, T=15, D=6, P=7, G=2):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.arange(T)[None, :] < _lengths(gen, B, T)[:, None]  # [B, T]
    last = torch.randn(B, P + T, D, generator=gen, dtype=torch.float64)  # [B, L, D]
    image_positions = [sorted(torch.randperm(P, generator=gen)[: 2 + b % 3].tolist()) for b in range(B)]
    gids = torch.arange(B // G).repeat_interleave(G)[torch.randperm(B, generator=gen)]  # shuffled groups
    adv = torch.randn(B, generator=gen, dtype=torch.float64)[:, None].expand(B, T).clone()  # [B, T]
    adv[gids == gids[0]] = 0.0  # a group with all-equal rewards
    return adv, last, image_positions, P, mask, gids


@pytest.mark.parametrize("schedule", ["linear", "exponential"])
@pytest.mark.parametrize("seed", range(6))
def test_vgpo_defaults_match_the_authors_code(seed, schedule):
    adv, last, img_pos, P, mask, gids = _vgpo_case(seed)
    B, T = mask.shape
    v = torch.stack([last[b, img_pos[b]].mean(0) for b in range(B)])  # [B, D]
    sig = Signals(mask, gids, torch.zeros(B), torch.ones(B, 1, dtype=torch.bool),
                  hidden=last[:, P - 1 : P - 1 + T], own_hidden=last[:, P : P + T], image_hidden_mean=v)
    out, _ = VGPOCredit(schedule=schedule).token_advantages(adv, sig)
    ref = vgpo_ref.authors_vgpo(adv, last, img_pos, P, mask, gids, modulation_type=schedule)
    ref = torch.tensor(ref, dtype=torch.float64)
    assert (out - ref)[mask].abs().max() < 1e-6
    assert not torch.allclose(out[mask], adv[mask])  # VGPO did reshape the advantages
    # The old options depart measurably from the authors' code on the same batch.
    old = VGPOCredit(schedule=schedule, hidden_position="predicting").token_advantages(adv, sig)[0]
    assert (old - ref)[mask].abs().max() > 1e-3


def test_vgpo_authors_gate_is_floor_with_min_one():
    # n = 13 real tokens: candidates from ordinal floor(0.5 * 13) = 6 (7 of them); the gate
    # keeps max(1, floor(0.2 * 7)) = 1 token; ceil would keep 2.
    w = torch.linspace(0.0, 1.0, 13, dtype=torch.float64)[None].flip(-1)  # decreasing focus
    mask = torch.ones(1, 13, dtype=torch.bool)
    u = normalised_position(mask)
    assert focus_gate(w, u, mask).nonzero()[:, 1].tolist() == [6]
    assert focus_gate(w, u, mask, rounding="ceil").nonzero()[:, 1].tolist() == [6, 7]
    # A one-token response is its own candidate (and gated; C(0) = 0 leaves it unchanged).
    assert focus_gate(w[:, :1], u[:, :1], mask[:, :1]).tolist() == [[True]]


def _sayo_case(seed, B=8, T=12, H=3, K=30):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.arange(T)[None, :] < _lengths(gen, B, T)[:, None]  # [B, T]
    ent = torch.rand(B, T, generator=gen, dtype=torch.float64)
    ent[2] = 0.5  # all-equal entropies: ties broken by position in both
    logits = torch.randn(B, T, H, K, generator=gen, dtype=torch.float64) * 2
    step_attns = logits.softmax(-1)  # [B, T, H, K]: row j = query at completion token j
    image_keys = [list(range(5, 25))] * B
    region_cols = [sorted(torch.randperm(20, generator=gen)[: 1 + b % 6].tolist()) for b in range(B)]
    region_keys = [[5 + c for c in cols] for cols in region_cols]
    return mask, ent, step_attns, image_keys, region_cols, region_keys


@pytest.mark.parametrize("seed", range(6))
def test_sayo_defaults_match_the_authors_code(seed):
    mask, ent, step_attns, image_keys, region_cols, region_keys = _sayo_case(seed)
    B, T = mask.shape
    own = step_attns[..., 5:25].mean(2)  # [B, T, N] head mean over the image keys
    region = torch.zeros(B, 20, dtype=torch.bool)
    for b, cols in enumerate(region_cols):
        region[b, cols] = True
    sig = Signals(mask, torch.arange(B), torch.ones(B), torch.ones(B, 20, dtype=torch.bool), entropies=ent,
                  image_attention={3: own.roll(1, 1)}, own_image_attention={3: own},
                  evidence_mask=region.double())
    method = SAYOCredit(layer=3)
    method.signal_request(4)
    r, _ = method.extra_rewards(sig)
    ids = sayo_ref.authors_entropy_ids(ent, mask)
    ref = torch.tensor(sayo_ref.authors_attn_reward(step_attns, ids, image_keys, region_keys), dtype=torch.float64)
    assert (r.double() - ref).abs().max() < 1e-6
    # The old pairing departs measurably.
    old, _ = sayo_attention_reward(own.roll(1, 1), sig.image_mask, region, ent, mask,
                                   pairing="same_position", rounding="ceil")
    assert (old.double() - ref).abs().max() > 1e-3


def test_sayo_unpadded_batch_equals_the_authors_code_without_the_fix():
    # With no padding the fix changes nothing: their padded ranking is the real ranking.
    mask, ent, step_attns, image_keys, region_cols, region_keys = _sayo_case(0)
    mask[:] = True
    ids_fixed = sayo_ref.authors_entropy_ids(ent, mask)
    ids_theirs = sayo_ref.authors_entropy_ids(ent, mask, real_tokens_only=False)
    assert ids_fixed == ids_theirs


@pytest.mark.slow
def test_position_conventions_on_a_tiny_model_forward(tiny_model_dirs):
    from visgrpo.attention.forward import policy_forward
    from visgrpo.attention.locate import locate_image_tokens

    path = tiny_model_dirs["qwen2_5_vl"]
    sdpa, eager = _conf._load(path, "sdpa"), _conf._load(path, "eager")
    T = 9
    batch = _conf.make_rl_batch(path, T=T)
    P, mask = batch["prompt_len"], batch["response_mask"]
    L = sdpa.config.get_text_config().num_hidden_layers
    vgpo, sayo = VGPOCredit(), SAYOCredit()

    predicting = SignalRequest(image_attention_layers=frozenset({L - 1}), response_attention_layers=frozenset({L - 1}))
    req = vgpo.signal_request(L).union(sayo.signal_request(L)).union(predicting)
    with torch.no_grad():
        out = policy_forward(sdpa, batch, req)
        plain = policy_forward(sdpa, batch, predicting)
        keys = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids")
        ref_out = eager(**{k: batch[k] for k in keys}, output_hidden_states=True, output_attentions=True)
    # Hidden states: own = position P + t, predicting = P + t - 1 (output_hidden_states).
    last = ref_out.hidden_states[-1]  # [B, L, D]
    torch.testing.assert_close(out.own_hidden, last[:, P : P + T], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.hidden, last[:, P - 1 : P - 1 + T], atol=1e-4, rtol=1e-4)
    # Attention: own rows = eager attention of the query at P + t (head mean, image cols);
    # the predicting rows are unchanged by the extra own row.
    tok = locate_image_tokens(batch["input_ids"], batch["attention_mask"], sdpa.config.image_token_id,
                              batch["image_grid_thw"], sdpa.config.vision_config.spatial_merge_size)
    assert torch.equal(out.image_mask, tok.mask)
    cols = tok.positions  # [B, N]
    full = ref_out.attentions[L - 1].mean(1)  # [B, L, L]
    B, N = cols.shape
    eager_own = full[:, P : P + T].gather(2, cols[:, None, :].expand(B, T, N))  # [B, T, N]
    keep = mask[:, :, None] & out.image_mask[:, None, :]
    torch.testing.assert_close(out.own_image_attention[L - 1], eager_own * keep, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.image_attention[L - 1], plain.image_attention[L - 1], atol=1e-6, rtol=0)
    torch.testing.assert_close(out.response_attention[L - 1], plain.response_attention[L - 1], atol=1e-6, rtol=0)
    assert out.image_attention[L - 1].shape == (B, T, N) and out.response_attention[L - 1].shape == (B, T, T)
    assert not out.own_image_attention[L - 1].requires_grad

    # VGPO on the module's signals == the authors' code on output_hidden_states.
    gids = torch.tensor([0, 0])
    adv = torch.tensor([1.0, -1.0])[:, None].expand(2, T)
    sig = dataclasses.replace(out, group_ids=gids, rewards=torch.zeros(2)).detached()
    got, _ = vgpo.token_advantages(adv, sig)
    img_pos = [(batch["input_ids"][b] == sdpa.config.image_token_id).nonzero()[:, 0].tolist() for b in range(2)]
    ref = vgpo_ref.authors_vgpo(adv, last.double(), img_pos, P, mask, gids)
    assert (got.double() - torch.tensor(ref, dtype=torch.float64))[mask].abs().max() < 1e-5

    # SAYO on the module's signals == the authors' code on eager attention rows P + j
    # (all heads) and entropies of the logits that predict each token.
    gen = torch.Generator().manual_seed(0)
    region = (torch.rand(B, N, generator=gen) < 0.3) & out.image_mask
    sig = dataclasses.replace(out, group_ids=gids, rewards=torch.zeros(2), evidence_mask=region.float()).detached()
    r, _ = sayo.extra_rewards(sig)
    logits = ref_out.logits[:, P - 1 : P - 1 + T].double()  # [B, T, V] rows predicting t
    ent = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)
    ids = sayo_ref.authors_entropy_ids(ent, mask)
    step_attns = ref_out.attentions[L - 1][:, :, P : P + T].transpose(1, 2).double()  # [B, T, H, L]
    image_keys = [cols[b][out.image_mask[b]].tolist() for b in range(B)]
    region_keys = [cols[b][region[b]].tolist() for b in range(B)]
    ref_r = sayo_ref.authors_attn_reward(step_attns, ids, image_keys, region_keys)
    assert (r.double() - torch.tensor(ref_r, dtype=torch.float64)).abs().max() < 1e-5
