"""Size of each VPPO / PAPO / recipe departure of docs/methods.md on one fixed random batch.

16 responses (2 prompts x 8), ragged lengths 1..200, log-probs uniform in [-3, 0], masked-
image log-probs with N(0, 1) noise, old log-probs 0.5-sigma off the current ones where an
update has happened ("off-policy"). Each line prints the max |difference| (advantages) or
the |difference| of a scalar loss between visgrpo's default and the authors' setting; the
authors' settings are visgrpo options, whose agreement with the authors' code is tested in
tests/credit/test_vppo.py, tests/credit/test_papo.py and tests/objectives/. The figures
are the "measured effect" column of docs/methods.md. Run from the repository root:

    python -m experiments.fidelity.measure_vppo_papo
"""

from __future__ import annotations

import torch

from visgrpo.credit.papo import PAPOCredit
from visgrpo.credit.vppo import VPPOCredit
from visgrpo.data.signals import Signals
from visgrpo.objectives import compute_advantages, get_preset, global_normaliser, policy_objective


def batch(seed: int = 0, B: int = 16, T: int = 200):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = 50  # 0.3 * 50 rounds up past 15 in float32
    mask = torch.arange(T)[None] < lengths[:, None]  # [B, T]
    logp = -3 * torch.rand(B, T, generator=g, dtype=torch.float64) * mask
    masked = (logp + torch.randn(B, T, generator=g, dtype=torch.float64)) * mask
    old = (logp + 0.5 * torch.randn(B, T, generator=g, dtype=torch.float64)) * mask
    ref = (logp + 0.2 * torch.randn(B, T, generator=g, dtype=torch.float64)) * mask
    gids = torch.arange(B) // 8
    rewards = torch.randint(0, 2, (B,), generator=g).double()
    sig = Signals(response_mask=mask, group_ids=gids, rewards=rewards, image_mask=torch.ones(B, 1, dtype=torch.bool),
                  logp=logp, masked_logp=masked)
    return sig, old, ref


def _adv(sig):
    a, _ = compute_advantages("grpo", sig.rewards, sig.group_ids, eps=1e-6)
    return a[:, None].expand(sig.response_mask.shape).clone()  # [B, T]


def measure_vppo(sig) -> None:
    a = _adv(sig)
    exact, _ = VPPOCredit(top_frac=0.3).token_advantages(a, sig)
    theirs, _ = VPPOCredit(top_frac=0.3, k_rounding="float32").token_advantages(a, sig)
    rows = int(((exact != 0).sum(-1) != (theirs != 0).sum(-1)).sum())
    print(f"VPPO k = ceil(n top_p) in float32 at top_p 0.3: {rows} of {len(a)} rows keep one more token, "
          f"advantage {float((exact - theirs).abs().max()):.2f}")
    ent = {c: float(VPPOCredit(entropy_coef=c).auxiliary_loss(sig)[0]) for c in (0.06, 0.12)}
    print(f"VPPO entropy coefficient 0.12 (8b script) vs 0.06: loss term {abs(ent[0.12] - ent[0.06]):.3f}")


def measure_papo(sig) -> None:
    loss = {eta: float(PAPOCredit(gamma=0.02, eta_aug=eta, eta_ori=eta).auxiliary_loss(sig)[0]) for eta in (0.0, 0.05)}
    print(f"PAPO 3b GRPO script (eta 0) vs papo_grpo.yaml (eta 0.05): credit loss {abs(loss[0.05] - loss[0.0]):.2f}")


def _objective_loss(cfg, logp, old, adv, mask, ref) -> float:
    loss, _ = policy_objective(cfg, logp, old, adv, mask, ref, global_normaliser(cfg.aggregation, mask))
    return float(loss)


def measure_objective(sig, old, ref) -> None:
    a, mask, logp = _adv(sig), sig.response_mask, sig.logp
    dapo, dual = get_preset("dapo"), get_preset("dapo", clip_ratio_c=3.0)
    on = abs(_objective_loss(dual, logp, logp, a, mask, None) - _objective_loss(dapo, logp, logp, a, mask, None))
    off = abs(_objective_loss(dual, logp, old, a, mask, None) - _objective_loss(dapo, logp, old, a, mask, None))
    print(f"dual clip C = 3 vs none: loss {on:.3f} on-policy, {off:.3f} off-policy")
    ours = get_preset("grpo")
    theirs = get_preset("grpo", aggregation="token_mean", kl_coef=0.01, eps_high=0.3, clip_ratio_c=3.0)
    diff = abs(_objective_loss(ours, logp, old, a, mask, ref) - _objective_loss(theirs, logp, old, a, mask, ref))
    print(f"PAPO GRPO objective (token mean, KL 0.01, clip 0.3, dual 3) vs the grpo preset: loss {diff:.3f}")


def authors_grpo_advantage_float32(rewards: list[float], eps: float = 1e-6) -> list[float]:
    """EasyR1's ``compute_grpo_outcome_advantage`` (the base of both authors' repositories)
    for one group: float32 scores, ``torch.mean`` / ``torch.std`` of the group.
    """
    scores = torch.tensor(rewards, dtype=torch.float32)
    mean, std = torch.mean(scores), torch.std(scores)
    return ((scores - mean) / (std + eps)).tolist()


def measure_all_equal_group() -> None:
    theirs = authors_grpo_advantage_float32([0.9] * 8)
    ours, _ = compute_advantages("grpo", torch.full((8,), 0.9), torch.zeros(8, dtype=torch.long), eps=1e-6)
    print(f"all-equal GRPO group at reward 0.9: |A| {max(abs(x) for x in theirs):.3f} theirs (float32), "
          f"{float(ours.abs().max()):.3f} visgrpo")


def main() -> None:
    """Print every VPPO / PAPO / recipe departure's size, one line each."""
    sig, old, ref = batch()
    measure_vppo(sig)
    measure_papo(sig)
    measure_objective(sig, old, ref)
    measure_all_equal_group()


if __name__ == "__main__":
    main()
