"""Rollouts with vLLM's offline ``LLM`` API (GPU only; selected with ``rollout_engine: vllm``).

vLLM is imported only when the engine is constructed. Prompts are the same chat-template
texts as for the HF engine (one ``<|vision_start|><|image_pad|><|vision_end|>`` per image,
which vLLM expands itself) with the PIL images under ``multi_modal_data["image"]``; vLLM
reads the model directory's ``preprocessor_config.json``, so images are resized exactly as
by the HF processor and evidence masks stay aligned. The returned token ids are laid out by
the same code as the HF engine (visgrpo/rollout/assemble.py), and the prompt side of the
RolloutBatch comes from the HF processor, so the training forward is identical.

Vision and placeholder tokens (``<|image_pad|>``, ``<|video_pad|>``, ``<|vision_start|>``
...) can never be sampled: ``SamplingParams.bad_words`` lists them (each is one special
token, so vLLM's bad-words processor sets its logit to -inf at every step), as the HF engine
does with ``suppress_tokens``; the response cleaning of assemble.py stays as a second guard.

Weights: before each call the policy's current weights (LoRA merged in by peft's
``merge_adapter`` when the policy is a ``PeftModel``) are copied into the vLLM model with its
``load_weights``; vLLM's Qwen-VL loaders map transformers' parameter names themselves.
"""

from __future__ import annotations

import contextlib

import torch

from visgrpo.data.batch import PromptBatch, RolloutBatch
from visgrpo.rollout.assemble import assemble_rollout, encode_prompts
from visgrpo.rollout.base import ROLLOUT_ENGINES, SamplingConfig
from visgrpo.rollout.vision import VISION_TOKENS, eos_token_ids, vision_token_ids


def vision_token_strings(tokenizer) -> list[str]:
    """The :data:`VISION_TOKENS` in ``tokenizer``'s vocabulary (vLLM bans them by string)."""
    vocab = tokenizer.get_vocab()
    return [t for t in VISION_TOKENS if t in vocab]


def _import_vllm():
    try:
        import vllm
    except ImportError as err:
        raise RuntimeError(
            "rollout engine 'vllm' needs the vllm package (pip install 'visgrpo[vllm]'); "
            "use rollout engine 'hf' otherwise"
        ) from err
    if not torch.cuda.is_available():
        raise RuntimeError(
            "rollout engine 'vllm' needs a CUDA GPU; use rollout engine 'hf' on this machine"
        )
    return vllm


@contextlib.contextmanager
def merged_weights(model):
    """Yield ``(name, tensor)`` pairs of the policy with LoRA adapters merged, then unmerge."""
    is_peft = hasattr(model, "merge_adapter") and hasattr(model, "get_base_model")
    if is_peft:
        model.merge_adapter()
    try:
        base = model.get_base_model() if is_peft else model
        pairs = []
        for name, param in base.state_dict().items():
            if "lora_" in name or ("modules_to_save" in name and "original_module" in name):
                continue
            pairs.append((name.replace(".base_layer", ""), param.detach()))
        yield pairs
    finally:
        if is_peft:
            model.unmerge_adapter()


@ROLLOUT_ENGINES.register("vllm")
class VLLMRolloutEngine:
    """Sample with vLLM.

    Args:
        model_path: checkpoint directory or hub id the vLLM engine loads (same as the policy's).
        on_vision_token: ``"mask"`` or ``"reject"`` (as for the HF engine).
        sync_weights: copy the policy's weights into vLLM before each ``generate``.
        gpu_memory_utilization: share of GPU memory vLLM may take (the trainer needs the rest).
        tensor_parallel_size: GPUs per vLLM engine.
        dtype: vLLM model dtype.
        max_model_len: context length (prompt + response) vLLM reserves KV cache for.
        max_images_per_prompt: ``limit_mm_per_prompt`` for images.
        enable_sleep_mode: let vLLM release its memory between rollouts (``LLM.sleep``).
        llm_kwargs: further ``vllm.LLM`` arguments.
    """

    def __init__(
        self,
        model_path: str,
        on_vision_token: str = "mask",
        sync_weights: bool = True,
        gpu_memory_utilization: float = 0.4,
        tensor_parallel_size: int = 1,
        dtype: str = "bfloat16",
        max_model_len: int | None = 4096,
        max_images_per_prompt: int = 1,
        enable_sleep_mode: bool = False,
        llm_kwargs: dict | None = None,
    ) -> None:
        if on_vision_token not in ("mask", "reject"):
            raise ValueError(f"on_vision_token must be 'mask' or 'reject', got {on_vision_token!r}")
        vllm = _import_vllm()
        self.vllm = vllm
        self.on_vision_token = on_vision_token
        self.sync_weights = sync_weights
        self.enable_sleep_mode = enable_sleep_mode
        self.llm = vllm.LLM(
            model=model_path,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            dtype=dtype,
            max_model_len=max_model_len,
            limit_mm_per_prompt={"image": max_images_per_prompt, "video": 0},
            enable_sleep_mode=enable_sleep_mode,
            **(llm_kwargs or {}),
        )

    def _vllm_model(self):
        """The ``nn.Module`` inside the (in-process) vLLM engine, across vLLM versions."""
        engine = self.llm.llm_engine
        paths = (
            ("model_executor", "driver_worker", "worker", "model_runner", "model"),
            ("model_executor", "driver_worker", "model_runner", "model"),
        )
        for path in paths:
            obj = engine
            try:
                for attr in path:
                    obj = getattr(obj, attr)
                return obj
            except AttributeError:
                continue
        raise RuntimeError(
            "cannot reach the vLLM model for weight sync (multiprocess engine?); set "
            "VLLM_ENABLE_V1_MULTIPROCESSING=0 or sync_weights=False"
        )

    def load_weights(self, model) -> None:
        """Copy the policy's (merged) weights into the vLLM engine and reset its prefix cache."""
        with merged_weights(model) as pairs:
            self._vllm_model().load_weights(pairs)
        with contextlib.suppress(AttributeError):
            self.llm.reset_prefix_cache()

    def sampling_params(
        self, sampling: SamplingConfig, eos: list[int], seed: int | None, banned: list[str] = ()
    ):
        """VLLM ``SamplingParams`` equivalent to ``sampling`` (n = G; greedy = temperature 0);
        ``banned`` token strings are never sampled (``bad_words``).
        """
        kwargs = dict(
            n=sampling.num_generations if sampling.do_sample else 1,
            max_tokens=sampling.max_new_tokens,
            repetition_penalty=sampling.repetition_penalty,
            stop=list(sampling.stop_strings) or None,
            include_stop_str_in_output=True,
            stop_token_ids=eos,
            skip_special_tokens=False,
            seed=seed,
        )
        if banned:
            kwargs["bad_words"] = list(banned)
        if sampling.do_sample:
            kwargs.update(
                temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k or -1
            )
        else:
            kwargs.update(temperature=0.0)
        return self.vllm.SamplingParams(**kwargs)

    @torch.no_grad()
    def generate(
        self,
        model,
        processor,
        prompts: PromptBatch,
        sampling: SamplingConfig,
        seed: int | None = None,
    ) -> RolloutBatch:
        """Sample G responses per prompt with vLLM; see :class:`~visgrpo.rollout.hf.HFRolloutEngine`."""
        if self.enable_sleep_mode:
            self.llm.wake_up()
        if self.sync_weights:
            self.load_weights(model)
        tok = processor.tokenizer
        eos = eos_token_ids(tok, getattr(model, "generation_config", None))
        requests = [
            {"prompt": text, "multi_modal_data": {"image": imgs if len(imgs) > 1 else imgs[0]}}
            if imgs
            else {"prompt": text}
            for text, imgs in zip(prompts.prompts, prompts.images, strict=True)
        ]
        params = self.sampling_params(sampling, eos, seed, banned=vision_token_strings(tok))
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        G = sampling.num_generations
        responses = []
        for out in outputs:
            ids = [list(c.token_ids) for c in out.outputs]
            responses.extend(ids if sampling.do_sample else ids * G)
        if self.enable_sleep_mode:
            self.llm.sleep(level=1)
        device = next(model.parameters()).device
        return assemble_rollout(
            processor,
            prompts,
            encode_prompts(processor, prompts),
            responses,
            G,
            eos_ids=eos,
            vision_ids=vision_token_ids(tok),
            on_vision_token=self.on_vision_token,
            stop_strings=list(sampling.stop_strings),
            device=device,
        )
