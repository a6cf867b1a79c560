"""Size of each SAYO / VGPO departure from the authors' code on one fixed random batch.

Prints the max |difference| in final advantages (VGPO) or attention rewards (SAYO)
between visgrpo's default and each option / each authors'-code behaviour we do not copy,
using the loop transcriptions in experiments/fidelity/references/{vgpo,sayo}.py. The figures are
the "measured effect" column of docs/methods.md. Run from the repository root:

    python -m experiments.fidelity.measure_departures
"""

from __future__ import annotations

import torch

from experiments.fidelity.references import sayo as sayo_ref
from experiments.fidelity.references import vgpo as vgpo_ref
from visgrpo.credit import VGPOCredit
from visgrpo.credit.sayo import sayo_attention_reward
from visgrpo.data.signals import Signals


def _maxdiff(a, b, mask) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b)[mask].abs().max())


def vgpo_batch(seed=0, B=16, T=40, D=16, P=12, G=8, offset=0.0):
    """16 responses (2 prompts x 8, rows shuffled), ragged lengths 1..T, random hidden states
    (``offset`` > 0 shifts them so that every cosine is positive).
    """
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0], lengths[1] = T, 1
    mask = torch.arange(T)[None] < lengths[:, None]  # [B, T]
    last = torch.randn(B, P + T, D, generator=gen, dtype=torch.float64) + offset  # [B, L, D]
    img = [list(range(2, 10))] * B
    gids = torch.arange(B // G).repeat_interleave(G)[torch.randperm(B, generator=gen)]
    rewards = torch.randint(0, 2, (B,), generator=gen).double()
    adv = torch.zeros(B, dtype=torch.float64)
    for g in gids.unique():
        r = rewards[gids == g]
        adv[gids == g] = (r - r.mean()) / (r.std() + 1e-6)
    return adv[:, None].expand(B, T).clone(), last, img, P, mask, gids


def vgpo_ours(adv, last, img, P, mask, gids, **options):
    B, T = mask.shape
    v = torch.stack([last[b, img[b]].mean(0) for b in range(B)])
    sig = Signals(mask, gids, torch.zeros(B), torch.ones(B, 1, dtype=torch.bool), hidden=last[:, P - 1 : P - 1 + T],
                  own_hidden=last[:, P : P + T], image_hidden_mean=v)
    return VGPOCredit(**options).token_advantages(adv, sig)[0]


def measure_vgpo() -> None:
    case = vgpo_batch()
    adv, last, img, P, mask, gids = case
    default = vgpo_ours(*case)
    authors = vgpo_ref.authors_vgpo(adv, last, img, P, mask, gids)
    print(f"VGPO default vs authors' code (bugs fixed): {_maxdiff(default, authors, mask):.2e}")
    print(f"VGPO gate_rounding=ceil: {_maxdiff(vgpo_ours(*case, gate_rounding='ceil'), default, mask):.3f}")
    print("VGPO hidden_position=predicting: "
          f"{_maxdiff(vgpo_ours(*case, hidden_position='predicting'), default, mask):.3f}")
    old = vgpo_ours(*case, gate_rounding="ceil", hidden_position="predicting")
    print(f"VGPO both old options: {_maxdiff(old, default, mask):.3f}")
    for offset, label in ((0.0, "random"), (3.0, "all cosines positive")):
        a, h, i, p, m, g = vgpo_batch(offset=offset)
        fixed = vgpo_ref.authors_vgpo(a, h, i, p, m, g)
        theirs = vgpo_ref.authors_vgpo(a, h, i, p, m, g, exclude_padding=False)
        print(f"VGPO padding as zeros in the batch min-max ({label}): {_maxdiff(theirs, fixed, m):.3f}")
    for n in (8, 4):
        theirs = vgpo_ref.authors_vgpo(adv, last, img, P, mask, gids, true_groups=False, rollout_n=n)
        print(f"VGPO consecutive-row groups of {n} on shuffled rows: {_maxdiff(theirs, authors, mask):.3f}")
    step = vgpo_ours(*case, schedule="step")
    step_ref = vgpo_ref.authors_vgpo(adv, last, img, P, mask, gids, modulation_type="step-function")
    print(f"VGPO step schedule at u == 0.5 exactly (their 1e-8): {_maxdiff(step, step_ref, mask):.3f}")


def sayo_batch(seed=0, B=16, T=40, H=4, K=60):
    """16 ragged responses; T + 1 query rows per response (row 0 = the last prompt token,
    row j + 1 = completion token j), softmax attention over K keys; two images at keys
    10..29 and 33..52 (the span 10..52 holds 3 text tokens); random evidence regions.
    """
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0], lengths[1] = T, 1
    mask = torch.arange(T)[None] < lengths[:, None]
    ent = torch.rand(B, T, generator=gen, dtype=torch.float64) * 3
    rows = (torch.randn(B, T + 1, H, K, generator=gen, dtype=torch.float64) * 2).softmax(-1)  # [B, T+1, H, K]
    keys = list(range(10, 30)) + list(range(33, 53))
    region = torch.rand(B, len(keys), generator=gen) < 0.25
    return mask, ent, rows, keys, region


def measure_sayo() -> None:
    mask, ent, rows, keys, region = sayo_batch()
    B, T = mask.shape
    img = torch.ones(B, len(keys), dtype=torch.bool)
    head_mean = rows[..., keys].mean(2)  # [B, T+1, N]
    own, pred = head_mean[:, 1:], head_mean[:, :T]

    def ours(pairing="authors", rounding="floor"):
        attn = own if pairing == "authors" else pred
        return sayo_attention_reward(attn, img, region, ent, mask, pairing=pairing, rounding=rounding)[0].double()

    region_keys = [[keys[c] for c in region[b].nonzero()[:, 0].tolist()] for b in range(B)]
    step = rows[:, 1:]  # decode steps: query = completion token j
    ids = sayo_ref.authors_entropy_ids(ent, mask)
    ref = sayo_ref.authors_attn_reward(step, ids, [keys] * B, region_keys)
    every = torch.ones(B, dtype=torch.bool)
    print(f"SAYO default vs authors' code (bugs fixed): {_maxdiff(ours(), ref, every):.2e}")
    print(f"SAYO entropy_attention_pairing=same_position: {_maxdiff(ours('same_position'), ours(), every):.3f}")
    print(f"SAYO selection_rounding=ceil: {_maxdiff(ours(rounding='ceil'), ours(), every):.3f}")
    print(f"SAYO both old options: {_maxdiff(ours('same_position', 'ceil'), ours(), every):.3f}")
    padded = sayo_ref.authors_attn_reward(step, sayo_ref.authors_entropy_ids(ent, mask, real_tokens_only=False),
                                          [keys] * B, region_keys)
    print(f"SAYO ranking padded positions, k from the padded length: {_maxdiff(padded, ref, every):.3f}")
    span = sayo_ref.authors_attn_reward(step, ids, [list(range(10, 53))] * B, region_keys)
    print(f"SAYO image span first..last (3 text tokens between two images): {_maxdiff(span, ref, every):.3f}")


def main() -> None:
    """Print every SAYO / VGPO departure's size, one line each (one thread, fixed seeds)."""
    torch.set_num_threads(1)
    measure_vgpo()
    measure_sayo()


if __name__ == "__main__":
    main()
