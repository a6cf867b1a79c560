"""The peer on the learning testbed: TRL's ``GRPOTrainer``, same warm start, data, reward and recipe.

``python -m experiments.learning.trl_peer --workdir DIR --seeds 0,1`` trains with TRL
(``loss_type="dapo"``, clip 0.2 / 0.28, token-mean aggregation, group-normalised advantage,
beta 0; the settings of :func:`experiments.bench.trl_peer.grpo_config`) on the learning
testbed's warm start and training prompts with its recipe (16 prompts x G = 8, lr 1e-3,
:data:`experiments.mechanism.study.LEARNING` steps, temperature 1, ``max_completion_length``
= the testbed's ``L_max``), then exports the policy and validates it with visgrpo's own
validation (greedy, 200 held-out prompts, ``val/accuracy_no_image`` too), so both sides are
scored by the same code. The reward is visgrpo's reward head: accuracy (weight 1) and format
(weight 0.1), two TRL reward functions so TRL logs the sampled accuracy per step.

What TRL's trainer does not have (its ``loss_type="dapo"`` is the loss only): DAPO's
dynamic sampling and overlong shaping. Each seed writes
``<results>/runs/trl_dapo_s<seed>.json`` (atomic; skipped when it exists) in the study's
format: ``final`` (validation), ``run_mean`` and ``curves`` (``reward/first_round/accuracy``:
TRL's ``rewards/accuracy/mean``, the mean over every generated completion of the step).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from experiments.bench.harness import RunSpec
from experiments.mechanism import study
from experiments.shapes import learning_testbed as testbed
from experiments.shapes.stages import Workdir, write_json


def _texts(completions) -> list[str]:
    out = []
    for comp in completions:
        text = comp[-1]["content"] if isinstance(comp, list) else str(comp)
        if isinstance(text, list):  # structured content blocks
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        out.append(text)
    return out


def _component(name: str):
    """A TRL reward function returning visgrpo's reward component ``name`` (unweighted)."""
    from visgrpo.rewards import RewardHead, RewardSpec

    head = RewardHead([RewardSpec(name, 1.0)])

    def reward(completions, answer, **kwargs) -> list[float]:
        samples = [{"answer": a, "answer_type": "text"} for a in answer]
        return head(_texts(completions), samples).components[name].float().tolist()

    reward.__name__ = name
    return reward


def train(work: Workdir, seed: int, steps: int, out_dir: Path) -> dict:
    """TRL training from the warm start; exports the policy to ``out_dir``; returns curves."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import GRPOTrainer

    from experiments.bench.trl_peer import grpo_config, trl_dataset

    spec = RunSpec(side="trl", model_dir=str(testbed.WARMSTART), data_dir=str(work.data / "train"),
                   prompts_per_step=testbed.RL_PROMPTS, group_size=8, max_completion_length=testbed.MAX_NEW_TOKENS,
                   learning_rate=testbed.RL_LR, warmup_steps=0, measure_steps=steps, seed=seed)
    model = AutoModelForImageTextToText.from_pretrained(spec.model_dir, dtype=torch.float32, attn_implementation="sdpa")
    processor = AutoProcessor.from_pretrained(spec.model_dir, padding_side="left")
    tok = processor.tokenizer
    model.generation_config.eos_token_id = sorted({tok.eos_token_id, tok.pad_token_id} - {None})
    with tempfile.TemporaryDirectory(prefix="trl-peer-") as tmp:
        from transformers.trainer_utils import IntervalStrategy

        args = grpo_config(spec, tmp)  # set after __post_init__ (a dataclass replace re-derives batch sizes)
        args.logging_strategy, args.logging_steps = IntervalStrategy.STEPS, 1
        args.reward_weights = [1.0, 0.1]
        trainer = GRPOTrainer(model=model, reward_funcs=[_component("accuracy"), _component("format")], args=args,
                              train_dataset=trl_dataset(spec.data_dir), processing_class=processor)
        trainer.train()
    history = [h for h in trainer.state.log_history if "rewards/accuracy/mean" in h]
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return {"reward/first_round/accuracy": [[int(h["step"]) - 1, float(h["rewards/accuracy/mean"])] for h in history],
            "reward/first_round/format": [[int(h["step"]) - 1, float(h["rewards/format/mean"])] for h in history]}


def run(work: Workdir, results: Path, seed: int, budget: study.StudyBudget) -> dict | None:
    """One seed: TRL training, then visgrpo's validation of the exported policy."""
    out = results / "runs" / f"trl_dapo_s{seed}.json"
    if out.exists():
        return None
    t0 = time.time()
    export = work.root / "runs" / "learning_trl" / f"s{seed}" / "export"
    curves = train(work, seed, budget.steps, export)
    st = study.Study(work, results, experiment="learning_trl", warmstart=export)
    name = f"trl_dapo_s{seed}"
    cfg = study.configurations()["dapo"]
    from experiments.shapes import recipe
    from experiments.shapes.stages import fit

    fit(work, [recipe.RL_CONFIG, st.config_file(cfg)], [
        f"--seed_everything={seed}", f"--model.init_args.policy.name_or_path={export}", *st.run_overrides(name),
        f"--data.limit_val={budget.limit_val}", *testbed.rl_overrides()],
        log=work.root / "runs" / "learning_trl" / f"{name}.log", subcommand="validate")
    final = study.final_metrics(work.tracking_uri, name, "learning_trl")
    means = {k: sum(v for _, v in c) / len(c) for k, c in curves.items() if c}
    result = {"config": "trl_dapo", "group": "peer", "dose": None, "objective": "trl_grpo_dapo_loss", "seed": seed,
              "steps": budget.steps, "limit_val": budget.limit_val, "seconds": round(time.time() - t0, 1),
              "final": final, "run_mean": means, "curves": curves | {"val/accuracy": [[budget.steps,
                                                                                       final["val/accuracy"]]]}}
    write_json(out, result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=".", help="where artifacts/ (the shapes data), runs/ and mlflow.db are")
    parser.add_argument("--results", default="experiments/learning/results")
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args(argv)
    work = Workdir(Path(args.workdir).resolve())
    for seed in (int(s) for s in args.seeds.split(",")):
        res = run(work, Path(args.results).resolve(), seed, study.LEARNING)
        word = "skipped (result exists)" if res is None else f"val/accuracy {res['final']['val/accuracy']:.3f}"
        print(f"trl seed {seed}: {word}", flush=True)
    print(json.dumps({"done": True}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
