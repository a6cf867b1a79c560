"""``SFTModule``: supervised warm start on the evidence data (response tokens only).

Small models start RL at zero reward, where GRPO has no signal (every group is all
wrong). A short supervised phase on the same prompts, with the target written as the
format the reward expects (``target_template``), brings accuracy above chance first. The
loss is the mean negative log-likelihood of the target's tokens (EOS included); the prompt
and the image tokens carry no loss. The teacher-forced layout is exactly the RL one
(``assemble_rollout``), so the same forward, probe and diagnostics apply.
"""

from __future__ import annotations

import torch

from visgrpo.data.batch import PromptBatch, RolloutBatch
from visgrpo.data.signals import SignalRequest
from visgrpo.lightning.base import PolicyModule
from visgrpo.models.loading import PolicyConfig
from visgrpo.rewards import RewardSpec
from visgrpo.rollout import SamplingConfig
from visgrpo.rollout.assemble import assemble_rollout, encode_prompts
from visgrpo.rollout.vision import eos_token_ids, vision_token_ids


def teacher_forced_batch(processor, prompts: PromptBatch, targets: list[str]) -> RolloutBatch:
    """Lay out ``targets`` (one per prompt, EOS appended) after their prompts, like a rollout."""
    tok = processor.tokenizer
    enc = encode_prompts(processor, prompts)
    eos = eos_token_ids(tok)
    responses = [tok(t, add_special_tokens=False)["input_ids"] + [eos[0]] for t in targets]
    return assemble_rollout(processor, prompts, enc, responses, 1, eos, vision_token_ids(tok))


class SFTModule(PolicyModule):
    """Supervised fine-tuning on ``target_template.format(answer=...)`` responses.

    Args:
        policy: how to load the policy.
        target_template: the response to learn, formatted with the sample's columns
            (``{answer}``, ``{answer_type}``, ...).
        rewards: reward components used by the validation loop.
        sampling: generation settings of the validation loop (greedy there).
        learning_rate, weight_decay, warmup_steps: AdamW and linear warm-up.
        logprob_chunk_size, attention_chunk_size, diagnostics_layer: as in ``RLVRModule``.
        rollout_engine: generation engine for validation.
        seed: base seed.
    """

    def __init__(
        self,
        policy: PolicyConfig,
        target_template: str = "<think></think><answer>{answer}</answer>",
        rewards: list[RewardSpec] | None = None,
        sampling: SamplingConfig | None = None,
        rollout_engine: str = "hf",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        logprob_chunk_size: int = 1024,
        attention_chunk_size: int = 256,
        diagnostics_layer: int | str = "last",
        seed: int = 0,
    ) -> None:
        super().__init__(
            policy, rewards, sampling, rollout_engine, learning_rate, weight_decay, warmup_steps,
            logprob_chunk_size, attention_chunk_size, diagnostics_layer, seed,
        )
        self.save_hyperparameters()  # after LightningModule.__init__, so they are logged

    def targets(self, prompts: PromptBatch) -> list[str]:
        """The target response of each prompt."""
        try:
            return [self.hparams.target_template.format(**s) for s in prompts.samples]
        except KeyError as e:
            raise KeyError(f"target_template uses {e} which the dataset rows do not have") from None

    def training_step(self, batch: PromptBatch, batch_idx: int) -> torch.Tensor:
        self.policy.train()
        tf = teacher_forced_batch(self.processor, batch, self.targets(batch)).to(self.device)
        out = self.forward_signals(self.policy, tf, SignalRequest())
        mask = tf.response_mask  # [B, T]
        loss = -(out.logp * mask).sum() / mask.sum().clamp(min=1)
        self.log("train/nll", loss.detach(), prog_bar=True, on_step=True, batch_size=len(batch))
        self.log("train/target_prob", (out.logp.detach().exp() * mask).sum() / mask.sum(), on_step=True,
                 batch_size=len(batch))
        return loss
