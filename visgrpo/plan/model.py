"""The recipe's model on the meta device: parameter counts, bytes and the shapes the memory
estimate needs (:class:`ModelFacts`).

The model is the family's real transformers class built from its configuration under
``torch.device("meta")`` (no memory, no download); LoRA is applied there with the same
:func:`visgrpo.models.lora.apply_lora` as training, so trainable counts and adapter dtypes
are peft's own. QLoRA cannot be quantised on the meta device, so its bytes follow what
:func:`visgrpo.models.loading.load_policy` does: bitsandbytes replaces every ``nn.Linear``
outside ``visual`` and ``lm_head`` by 4-bit weights (0.5 byte per weight plus one float32
absmax per 64-weight block, or with double quantisation one byte per block plus one float32
per 256 blocks; bitsandbytes ``Linear4bit``/``quantize_4bit``), and peft's
``prepare_model_for_kbit_training`` then casts every other bf16/fp16 parameter to float32.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from visgrpo.models.families import FAMILIES
from visgrpo.models.loading import DTYPES, TINY_PREFIX, ModelNotFound, PolicyConfig, resolve_model
from visgrpo.models.lora import TEXT_LINEAR, LoraSettings, apply_lora
from visgrpo.plan.published import PUBLISHED, published_config, published_id

QLORA_BLOCK = 64  # bitsandbytes 4-bit block size
QLORA_SKIP = ("visual", "lm_head")  # llm_int8_skip_modules of load_policy


@dataclass(frozen=True)
class TextDims:
    """Text decoder sizes: hidden ``h``, MLP ``inter``, ``layers``, query/key-value heads, head dim, vocabulary."""

    hidden: int
    inter: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    qk_norm: bool  # Qwen3: RMSNorm on q and k per head

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


@dataclass(frozen=True)
class VisionDims:
    """Vision tower sizes.

    ``depth`` blocks of width ``hidden``, MLP ``inter`` (``gated``: SwiGLU), ``heads``, ``merge``.
    """

    depth: int
    hidden: int
    inter: int
    heads: int
    gated: bool
    merge: int


@dataclass(frozen=True)
class LoraShape:
    """The adapters of one decoder layer: rank, dropout, adapter dtype bytes, and the input
    widths of the adapted linears grouped by shared input (q/k/v, o, gate/up, down).
    """

    r: int
    dropout: float
    adapter_bytes: int
    groups: tuple[tuple[int, int], ...]  # (input width, number of adapted linears reading it)


@dataclass(frozen=True)
class ModelFacts:
    """What the memory estimate needs to know about the policy."""

    name: str
    family: str
    text: TextDims
    vision: VisionDims
    total_params: int
    trainable_params: int
    weight_bytes: int  # as held in memory for training (QLoRA: 4-bit + float32 rest)
    trainable_bytes: int  # bytes of the trainable parameters (= of their gradients)
    compute_bytes: int  # activation dtype bytes (the policy's dtype)
    serve_bytes: int  # the weights in the policy dtype, unquantised (a vLLM copy)
    base_trainable: bool  # full fine-tuning (every base weight has a gradient)
    vision_trainable: bool
    lora: LoraShape | None


def model_config(name_or_path: str, trust_remote_code: bool = False):
    """The transformers configuration of ``name_or_path``: a shipped published config (hub id),
    ``tiny:<family>`` (built on first use) or a local model directory.

    Raises:
        ModelNotFound: neither (one line naming it and the shipped configs).
    """
    from transformers import AutoConfig

    if published_id(name_or_path) is not None:
        return published_config(name_or_path)
    if name_or_path.startswith(TINY_PREFIX) or Path(name_or_path).is_dir():
        return AutoConfig.from_pretrained(resolve_model(name_or_path), trust_remote_code=trust_remote_code)
    raise ModelNotFound(f"{name_or_path}: not a local model directory, not tiny:<family> and not a shipped "
                        f"published config ({', '.join(PUBLISHED)}); give a directory holding its config.json")


def _dims(config) -> tuple[str, TextDims, VisionDims]:
    family = config.model_type
    if family not in FAMILIES:
        raise ValueError(f"model_type {family!r} is not a supported family ({', '.join(sorted(FAMILIES))})")
    t, v = config.get_text_config(), config.vision_config
    head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
    text = TextDims(t.hidden_size, t.intermediate_size, t.num_hidden_layers, t.num_attention_heads,
                    t.num_key_value_heads, head_dim, t.vocab_size, family == "qwen3_vl")
    if family == "qwen2_vl":
        width = v.embed_dim
        vision = VisionDims(v.depth, width, int(width * v.mlp_ratio), v.num_heads, False, v.spatial_merge_size)
    else:
        vision = VisionDims(v.depth, v.hidden_size, v.intermediate_size, v.num_heads, family == "qwen2_5_vl",
                            v.spatial_merge_size)
    return family, text, vision


def _lora_shape(text: TextDims, settings: LoraSettings, adapter_bytes: int) -> LoraShape:
    names = TEXT_LINEAR if settings.target_modules == "all-linear" else tuple(settings.target_modules)
    width = {"q_proj": text.hidden, "k_proj": text.hidden, "v_proj": text.hidden, "o_proj": text.q_dim,
             "gate_proj": text.hidden, "up_proj": text.hidden, "down_proj": text.inter}
    shared = (("q_proj", "k_proj", "v_proj"), ("o_proj",), ("gate_proj", "up_proj"), ("down_proj",))
    groups = tuple((width[g[0]], sum(n in names for n in g)) for g in shared if any(n in names for n in g))
    return LoraShape(settings.r, settings.dropout, adapter_bytes, groups)


def _qlora_bytes(model, double_quant: bool) -> int:
    """Bytes of a QLoRA policy after loading (see the module docstring)."""
    per_block = 1 + 4 / 256 if double_quant else 4  # absmax bytes per 64-weight block
    total = 0.0
    quantised: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not any(s in name.split(".") for s in QLORA_SKIP) \
                and "lora_" not in name:
            n = module.weight.numel()
            total += n * 0.5 + -(-n // QLORA_BLOCK) * per_block
            quantised.add(id(module.weight))
    for p in model.parameters():
        if id(p) not in quantised:
            total += p.numel() * (4 if p.dtype in (torch.bfloat16, torch.float16) else p.element_size())
    return int(total)


def model_facts(policy: PolicyConfig) -> ModelFacts:
    """Build ``policy``'s model on the meta device (with its LoRA) and measure it."""
    from transformers import AutoModelForImageTextToText

    config = model_config(policy.name_or_path, policy.trust_remote_code)
    family, text, vision = _dims(config)
    dtype = DTYPES[policy.dtype]
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
        serve = sum(p.numel() * p.element_size() for p in model.parameters())
        if policy.lora is not None:
            model = apply_lora(model, policy.lora)
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    # Tied embeddings are one parameter; parameters() yields it once.
    weight_bytes = (_qlora_bytes(model, policy.double_quant) if policy.quantization is not None
                    else sum(p.numel() * p.element_size() for p in params))
    lora = None
    if policy.lora is not None:
        adapter_bytes = trainable[0].element_size() if trainable else 4
        lora = _lora_shape(text, policy.lora, adapter_bytes)
    return ModelFacts(
        name=policy.name_or_path,
        family=family,
        text=text,
        vision=vision,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in trainable),
        weight_bytes=weight_bytes,
        trainable_bytes=sum(p.numel() * p.element_size() for p in trainable),
        compute_bytes=torch.tensor([], dtype=dtype).element_size(),
        serve_bytes=serve,
        base_trainable=policy.lora is None,
        vision_trainable=policy.lora is None or policy.lora.include_vision,
        lora=lora,
    )
