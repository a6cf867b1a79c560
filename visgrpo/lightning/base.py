"""``PolicyModule``: what the RL and SFT modules share.

It owns the policy (loaded from a hub id or a local directory, with LoRA/QLoRA), its
processor, the rollout engine, the reward head and the evaluation loop (greedy decoding
on a held-out split: accuracy per answer type, evidence attention ratio, response length),
plus attention maps for the overlay callback and adapter-only checkpoints under LoRA.
"""

from __future__ import annotations

import lightning as L
import torch

from visgrpo.attention.forward import policy_forward
from visgrpo.credit import resolve_layers
from visgrpo.credit.diagnostics import batch_diagnostics
from visgrpo.credit.mechanism import target_metrics
from visgrpo.data.batch import PromptBatch, RolloutBatch
from visgrpo.data.signals import SignalRequest, Signals
from visgrpo.lightning.callbacks import attention_map
from visgrpo.lightning.errors import check_hyperparameters
from visgrpo.lightning.steps import signals_of
from visgrpo.models.loading import PolicyConfig, load_policy
from visgrpo.models.lora import LoraSettings
from visgrpo.objectives import ObjectiveOverrides
from visgrpo.rewards import RewardHead, RewardSpec
from visgrpo.rollout import SamplingConfig, build_rollout_engine

# Checkpoints hold these plain dataclasses among the hyper-parameters; allow-listing them lets
# ``torch.load(weights_only=True)`` (and Lightning's resume with ``weights_only=True``) read them.
torch.serialization.add_safe_globals([PolicyConfig, LoraSettings, SamplingConfig, RewardSpec, ObjectiveOverrides])


def default_rewards() -> list[RewardSpec]:
    """Accuracy (weight 1) plus the think/answer format (weight 0.1)."""
    return [RewardSpec("accuracy", 1.0), RewardSpec("format", 0.1)]


class PolicyModule(L.LightningModule):
    """Base of :class:`RLVRModule` and :class:`SFTModule` (see their docstrings for the args)."""

    def __init__(
        self,
        policy: PolicyConfig,
        rewards: list[RewardSpec] | None,
        sampling: SamplingConfig | None,
        rollout_engine: str,
        learning_rate: float,
        weight_decay: float,
        warmup_steps: int,
        logprob_chunk_size: int,
        attention_chunk_size: int,
        diagnostics_layer: int | str,
        seed: int,
    ) -> None:
        super().__init__()
        # Bad values are refused before the policy loads, naming the config key.
        check_hyperparameters(learning_rate=learning_rate, weight_decay=weight_decay, warmup_steps=warmup_steps,
                              logprob_chunk_size=logprob_chunk_size, attention_chunk_size=attention_chunk_size)
        self.policy_config = policy
        self.reward_head = RewardHead(rewards or default_rewards())
        self.sampling = sampling or SamplingConfig()
        self.engine = build_rollout_engine(rollout_engine)
        self.policy, self.processor = load_policy(policy)
        self.policy.train()  # generation and evaluation switch to eval mode and back
        n_layers = self.policy.config.get_text_config().num_hidden_layers
        self.num_layers = n_layers
        self.diagnostics_layer = resolve_layers(diagnostics_layer, n_layers)[0]
        self.eval_request = SignalRequest(image_attention_layers=frozenset({self.diagnostics_layer}))
        # Masked-image signal (VPPO, PAPO): the processor's normalisation; the RL step sets
        # ``perturb_seed`` from the seed and the step, so resumed runs draw the same masks.
        ip = getattr(self.processor, "image_processor", None)
        mean, std = getattr(ip, "image_mean", None), getattr(ip, "image_std", None)
        self.image_norm = None if mean is None or std is None else (tuple(mean), tuple(std))
        self.perturb_seed = int(seed)
        # Validation may measure more (every layer, each credit method's target): see
        # RLVRModule.set_credit and visgrpo.credit.mechanism.
        self.validation_request = self.eval_request
        self.target_methods: list = []
        # With LoRA only the adapters are checkpointed; the frozen base comes from ``policy``.
        self.strict_loading = policy.lora is None

    # ----------------------------------------------------------------- optimisation
    def configure_optimizers(self):
        params = [p for p in self.policy.parameters() if p.requires_grad]
        hp = self.hparams
        opt = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)
        warmup = max(int(hp.warmup_steps), 0)
        # Linear warm-up: step s (0-based) runs at lr * (s + 1) / (warmup + 1), then at lr.
        sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / (warmup + 1), end_factor=1.0,
                                                  total_iters=warmup)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def forward_signals(self, model, rollout: RolloutBatch, request: SignalRequest) -> Signals:
        """One teacher-forced forward of ``model`` over ``rollout`` (see attention/forward.py)."""
        return policy_forward(
            model,
            rollout,
            request,
            temperature=self.sampling.temperature if self.sampling.temperature > 0 else 1.0,
            logprob_chunk=self.hparams.logprob_chunk_size,
            probe_chunk=self.hparams.attention_chunk_size,
            perturb_seed=self.perturb_seed,
            image_norm=self.image_norm,
            share_prefix=bool(self.hparams.get("share_prefix", True)),  # RLVRModule's switch
        )

    def greedy(self) -> SamplingConfig:
        """Greedy, one response per prompt (validation and overlays)."""
        return self.sampling.greedy()

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.policy_config.lora is not None:
            trainable = {f"policy.{n}" for n, p in self.policy.named_parameters() if p.requires_grad}
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}

    # ----------------------------------------------------------------- evaluation
    def validation_step(self, batch: PromptBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: PromptBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    @torch.no_grad()
    def _evaluate(self, batch: PromptBatch, stage: str) -> None:
        rollout = self.engine.generate(self.policy, self.processor, batch, self.greedy(), seed=0).to(self.device)
        scored = self.reward_head(rollout.completions, rollout.samples)
        out = self.forward_signals(self.policy, rollout, self.validation_request)
        signals = signals_of(out, rollout, scored.total.to(self.device)).detached()
        n = len(rollout.completions)
        metrics = {
            f"{stage}/reward": scored.total.float().mean(),
            f"{stage}/response_length": rollout.response_mask.sum(-1).float().mean(),
        }
        acc = scored.components.get("accuracy")
        if acc is not None:
            metrics[f"{stage}/accuracy"] = acc.float().mean()
            kinds = [s.get("answer_type", "text") for s in rollout.samples]
            for kind in sorted(set(kinds)):
                sel = torch.tensor([k == kind for k in kinds])
                metrics[f"{stage}/accuracy_{kind}"] = acc[sel].float().mean()
        for k, v in batch_diagnostics(signals, layer=self.diagnostics_layer).items():
            if torch.as_tensor(v).numel() == 1:
                metrics[f"{stage}/{k.split('/', 1)[-1]}"] = torch.as_tensor(v, dtype=torch.float32)
        if self.target_methods:
            for k, v in target_metrics(self.target_methods, signals).items():
                metrics[f"{stage}/{k}"] = torch.as_tensor(v, dtype=torch.float32)
        self.log_dict(metrics, on_epoch=True, on_step=False, batch_size=n, sync_dist=True)

    @torch.no_grad()
    def attention_maps(self, prompts: PromptBatch, layer: int | str | None = None) -> list[tuple]:
        """``(image, heat [gh, gw], completion)`` for the first image of each prompt (greedy
        answer), at decoder ``layer`` (an index or a name such as ``two_thirds``; default the
        diagnostics layer).
        """
        was_training = self.policy.training
        rollout = self.engine.generate(self.policy, self.processor, prompts, self.greedy(), seed=0).to(self.device)
        layer = self.diagnostics_layer if layer is None else resolve_layers(layer, self.num_layers)[0]
        request = SignalRequest(image_attention_layers=frozenset({layer}))
        out = self.forward_signals(self.policy, rollout, request)
        attn = out.image_attention[layer]  # [B, T, N]
        merge = self.processor.image_processor.merge_size
        maps, first_image = [], 0
        for i, images in enumerate(prompts.images):
            _, gh, gw = rollout.image_grid_thw[first_image].tolist()
            heat = attention_map(attn[i], rollout.response_mask[i], (gh // merge, gw // merge))
            maps.append((images[0], heat, rollout.completions[i]))
            first_image += len(images)
        self.policy.train(was_training)
        return maps
