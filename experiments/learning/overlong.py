"""DAPO's overlong shaping, calibrated per testbed from the warm start's response lengths.

DAPO's soft overlong punishment (Yu et al. 2025, eq. 13; verl ``reward_score`` /
``dapo`` recipe: ``max_response_length`` 20480 with ``overlong_buffer.len`` 4096) is 0 up
to ``L_max - L_cache`` tokens, then falls linearly to -1 at ``L_max``. Its onset is meant to
sit beyond what a good answer needs; the relational testbed put it at 102 of 128 tokens,
inside the warm start's own correct chains (issue 22: 36% of them, 103-108 tokens, lost up
to 0.23). :func:`overlong_settings` places the onset above the longest warm-start response
with headroom and keeps DAPO's window-to-onset proportion (4096 / 16384 = 1/4);
:func:`response_lengths` measures the lengths (greedy and sampled) on held-out prompts.

``python -m experiments.learning.overlong --model DIR --data DIR`` prints both and the
settings; each testbed records its result (``experiments/learning/README.md``).
"""

from __future__ import annotations

import argparse
import math

import numpy as np

DAPO_WINDOW_TO_ONSET = 4096 / (20480 - 4096)


def overlong_settings(lengths, headroom: float = 1.25, proportion: float = DAPO_WINDOW_TO_ONSET) -> dict:
    """``{"onset", "cache", "max_new_tokens"}`` for responses of these ``lengths`` (tokens).

    onset = ceil(headroom * max(lengths)): no warm-start response is punished;
    cache (the window ``L_cache``) = ceil(proportion * onset), at least 1;
    max_new_tokens (``L_max``) = onset + cache.
    """
    v = np.asarray(list(lengths), dtype=np.float64)
    if v.size == 0 or not np.all(np.isfinite(v)) or v.min() < 0:
        raise ValueError("overlong_settings needs at least one finite, non-negative response length")
    onset = max(1, math.ceil(headroom * float(v.max())))
    cache = max(1, math.ceil(proportion * onset))
    return {"onset": onset, "cache": cache, "max_new_tokens": onset + cache}


def response_lengths(model: str, data: str, n: int = 200, max_new_tokens: int = 256, generations: int = 4,
                     seed: int = 0) -> dict[str, list[int]]:
    """Greedy and sampled (temperature 1, ``generations`` each) response lengths of
    ``model`` on the first ``n`` prompts of the dataset directory ``data``.
    """
    import torch

    from visgrpo.lightning.datamodule import EvidenceDataModule
    from visgrpo.models.loading import PolicyConfig, load_policy
    from visgrpo.rollout import SamplingConfig, build_rollout_engine

    policy, processor = load_policy(PolicyConfig(name_or_path=model, dtype="float32"))
    policy.eval()
    dm = EvidenceDataModule(train_path=data, val_path=data, model_path=model, batch_size=25, limit_val=n)
    dm.set_processor(processor)
    dm.setup("validate")
    engine = build_rollout_engine("hf")
    sampled = SamplingConfig(max_new_tokens=max_new_tokens, num_generations=generations, temperature=1.0)
    out: dict[str, list[int]] = {"greedy": [], "sampled": []}
    torch.manual_seed(seed)
    with torch.no_grad():
        for i, batch in enumerate(dm.val_dataloader()):
            for key, cfg in (("greedy", sampled.greedy()), ("sampled", sampled)):
                rollout = engine.generate(policy, processor, batch, cfg, seed=seed + i)
                out[key] += rollout.response_mask.sum(-1).tolist()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the warm start (a Hugging Face directory)")
    parser.add_argument("--data", required=True, help="a held-out dataset directory")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    args = parser.parse_args(argv)
    lengths = response_lengths(args.model, args.data, args.n, args.max_new_tokens)
    for key, v in lengths.items():
        q = np.percentile(v, [50, 90, 99, 100])
        print(f"{key}: n={len(v)} median {q[0]:.0f}, p90 {q[1]:.0f}, p99 {q[2]:.0f}, max {q[3]:.0f}")
    print("settings (from every length):", overlong_settings(lengths["greedy"] + lengths["sampled"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
