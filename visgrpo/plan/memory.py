"""Memory of one RL step per GPU, from the model's facts and the step's shape (pure functions).

Every term is what autograd keeps (the tensors a backward needs) or what a phase allocates,
counted from the modules' code (transformers' Qwen2/2.5/3-VL decoder layer, peft's LoRA
layer, :mod:`visgrpo.attention.forward`), in bytes:

* **weights** ``W``, **gradients** ``G`` (the trainable parameters' bytes) and **optimiser**
  ``O = 2 G`` (AdamW's two moments in the parameters' dtype, ``visgrpo.lightning.base``);
  FSDP divides the three by the GPU count; DDP with more than one GPU adds ``G`` (its
  gradient buckets are a copy unless ``gradient_as_bucket_view``).
* **activations** of the micro-batch forward with grad: per token and decoder layer,
  :func:`decoder_bytes_per_token`; the tokens are ``groups x P + rows x T`` with the shared
  prefix (each group's prompt once) or ``rows x (P + T)`` without; plus the vision tower when
  it trains, the final norm, the response rows' logits and their gradient (``rows x T x V``
  in the policy dtype, twice), the log-softmax chunk (three ``chunk x V`` float32
  buffers, ``visgrpo.objectives.logprobs``) and one layer's gradient temporaries in the
  backward. With gradient checkpointing each layer keeps
  only its input (``b h`` per token) and one layer's activations exist again in the backward.
* **probe**: per probed layer the ``rows x T x N`` float32 attention result (``N`` image
  tokens; response-response layers ``T x T``) plus the chunk buffers of the softmax
  (``rows x heads x chunk x L`` float32, three of them).
* **masked-image forward** (VPPO, PAPO) and the reference forward (KL): one no-grad forward
  on top of the activations: one layer's working set over the tokens plus the logits.
* **rollout** (``hf`` engine): the KV cache of ``prompts x G`` rows of ``P + T`` tokens while
  the weights and optimiser state stay; with ``vllm`` a fixed share of the GPU instead
  (``gpu_memory_utilization``), which must also hold vLLM's copy of the weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from visgrpo.plan.model import ModelFacts, TextDims

GIB = 1024**3
F32 = 4


@dataclass(frozen=True)
class StepShape:
    """The shape of one RL step on one rank (what the recipe sets).

    Attributes:
        prompts: prompts per rank per step (``data.batch_size``); G: responses per prompt.
        prompt_tokens: P (``data.max_prompt_tokens``); response_tokens: T (``max_new_tokens``).
        image_tokens: N merged visual tokens per prompt (part of P).
        micro_batch_size: responses per forward (whole groups).
        share_prefix: each group's prompt runs through the decoder once.
        checkpointing: gradient checkpointing.
        padded: rows are padded (SDPA then repeats key/value heads: no GQA kernel).
        probe_layers / grad_probe_layers / response_probe_layers: probed decoder layers.
        masked_forward: the masked-image forward runs (VPPO, PAPO).
        reference: the KL's reference forward runs; reference_copy: it is a frozen copy (no LoRA).
        engine: ``hf`` or ``vllm``; vllm_share: vLLM's ``gpu_memory_utilization``.
        logprob_chunk / probe_chunk: rows per chunk of the log-softmax / the probe.
        device: ``cuda`` or ``cpu`` (the dropout mask's dtype differs).
    """

    prompts: int
    G: int
    prompt_tokens: int
    response_tokens: int
    image_tokens: int
    micro_batch_size: int
    share_prefix: bool = True
    checkpointing: bool = False
    padded: bool = True
    probe_layers: int = 0
    grad_probe_layers: int = 0
    response_probe_layers: int = 0
    masked_forward: bool = False
    reference: bool = False
    reference_copy: bool = False
    engine: str = "hf"
    vllm_share: float = 0.4
    logprob_chunk: int = 1024
    probe_chunk: int = 256
    device: str = "cuda"

    @property
    def micro_rows(self) -> int:
        """Responses per micro-batch: whole groups, at least one group (``group_micro_batches``)."""
        return max(self.micro_batch_size // self.G, 1) * self.G

    @property
    def micro_groups(self) -> int:
        return self.micro_rows // self.G

    def attention_keys(self) -> int:
        """Key positions SDPA keeps for the backward over one micro-batch forward: the shared
        prefix's continuation attends from every row to its group's whole prompt (the cache
        is indexed per row), the prefix pass to the prompt once per group.
        """
        P, T = self.prompt_tokens, self.response_tokens
        if self.share_prefix:
            return self.micro_groups * P + self.micro_rows * (P + T)
        return self.micro_rows * (P + T)

    def forward_tokens(self) -> int:
        """Decoder tokens of one micro-batch forward."""
        P, T = self.prompt_tokens, self.response_tokens
        if self.share_prefix:
            return self.micro_groups * P + self.micro_rows * (T + 1)
        return self.micro_rows * (P + T)

    def rollout_tokens(self, gpus: int) -> int:
        """Tokens one step generates and trains on, over every GPU (prompt + response, upper bound)."""
        return gpus * self.prompts * self.G * (self.prompt_tokens + self.response_tokens)


def _lora_bytes_per_token(facts: ModelFacts, mask_bytes: int) -> int:
    """Per token and layer, what peft's LoRA layers keep: per adapted linear the dropout mask
    (``mask_bytes``) and its output (adapter dtype; the input is cast to it first), and the
    rank-r output of ``lora_A``; with no dropout the cast input, once per shared input.
    """
    lora = facts.lora
    if lora is None:
        return 0
    a, out = lora.adapter_bytes, 0
    for width, n in lora.groups:
        if lora.dropout > 0:
            out += n * (mask_bytes + a) * width
        elif a != facts.compute_bytes:
            out += n * a * width
        elif not facts.base_trainable:
            out += a * width  # the shared input itself, kept once for lora_A
        out += n * a * lora.r
    return out


def dropout_mask_bytes(facts: ModelFacts, device: str) -> int:
    """Bytes per element of a dropout mask: CUDA's fused ``native_dropout`` keeps a bool mask;
    elsewhere ``dropout`` multiplies by a mask of the input's dtype (the LoRA adapters').
    """
    return 1 if device == "cuda" else (facts.lora.adapter_bytes if facts.lora else facts.compute_bytes)


def kv_bytes_per_key(facts: ModelFacts, padded: bool = True) -> int:
    """Bytes SDPA keeps per key position and layer: key and value, repeated to every query
    head when a padding mask rules out SDPA's GQA path (transformers ``use_gqa_in_sdpa``).
    """
    t = facts.text
    return 2 * facts.compute_bytes * (t.q_dim if padded and t.kv_heads != t.heads else t.kv_dim)


def decoder_bytes_per_token(facts: ModelFacts, padded: bool = True, device: str = "cuda") -> int:
    """Bytes autograd keeps per token in one decoder layer (transformers' ``*DecoderLayer``).

    RMSNorm keeps its float32 input (``pow``/``mul``), and with a trainable weight also the
    normalised input and its output (the projections' input): ``(4 + 2b) h``, else ``4 h``.
    Attention keeps the rotated query, key and value (repeated to every query head when a
    padding mask rules out SDPA's GQA path), the SDPA output and its float32 log-sum-exp per
    head, and (trainable ``o_proj``) the output's contiguous copy. Qwen3's q/k norms add
    ``(4 + b)`` per q/k element (``4`` frozen). The SwiGLU MLP keeps the gate, the SiLU
    output and the up projection (``3 b I``) and, for a trainable ``down_proj``, its input.
    """
    t: TextDims = facts.text
    b, h = facts.compute_bytes, t.hidden
    full = facts.base_trainable
    norm = (F32 + 2 * b) * h if full else F32 * h
    attn = b * 2 * t.q_dim + kv_bytes_per_key(facts, padded) + F32 * t.heads + (b * t.q_dim if full else 0)
    if t.qk_norm:
        attn += (F32 + (b if full else 0)) * (t.q_dim + t.kv_dim)
    mlp = b * t.inter * (4 if full else 3)
    return 2 * norm + attn + mlp + _lora_bytes_per_token(facts, dropout_mask_bytes(facts, device))


def vision_bytes_per_patch(facts: ModelFacts) -> int:
    """Bytes autograd keeps per patch in one vision block (when the vision tower trains):
    two norms, the fused qkv output, the float32 rotated q/k, SDPA output and ``proj`` input,
    and the MLP (SwiGLU ``4 b I``; fc1 -> GELU -> fc2 ``3 b I``).
    """
    v, b = facts.vision, facts.compute_bytes
    norm = (F32 + 2 * b) * v.hidden
    attn = b * 3 * v.hidden + 2 * F32 * v.hidden + 2 * b * v.hidden
    mlp = b * v.inter * (4 if v.gated else 3)
    return 2 * norm + attn + mlp


def activation_bytes(facts: ModelFacts, s: StepShape) -> int:
    """Activations of one micro-batch forward with grad (see the module docstring)."""
    t, b = facts.text, facts.compute_bytes
    tokens, keys = s.forward_tokens(), s.attention_keys()
    rows_T = s.micro_rows * s.response_tokens
    kv = kv_bytes_per_key(facts, s.padded)
    layer = tokens * (decoder_bytes_per_token(facts, s.padded, s.device) - kv) + keys * kv
    if s.checkpointing:
        decoder = tokens * t.layers * b * t.hidden + layer
    else:
        decoder = t.layers * layer
    vision = 0
    if facts.vision_trainable:
        patches = s.micro_groups * s.image_tokens * facts.vision.merge**2
        blocks = 1 if s.checkpointing else facts.vision.depth
        vision = patches * blocks * vision_bytes_per_patch(facts)
    final_norm = tokens * ((F32 + 2 * b) * t.hidden if facts.base_trainable else F32 * t.hidden)
    # The backward's working set in one layer: the incoming and outgoing hidden-state
    # gradients, the MLP's three intermediate gradients and the attention's dq, dk, dv, dout.
    backward = tokens * b * (2 * t.hidden + 3 * t.inter + 2 * t.q_dim) + keys * kv
    logits = 2 * rows_T * t.vocab * b  # the logits kept for the backward, then their gradient
    chunk = 3 * min(s.logprob_chunk, rows_T) * t.vocab * F32
    return decoder + vision + final_norm + backward + logits + chunk


def probe_bytes(facts: ModelFacts, s: StepShape) -> int:
    """The attention probe (``visgrpo.attention.probe``): per probed layer the head-mean
    ``rows x T x N`` float32 result (per head on grad layers, which keep it for the backward;
    response-response layers ``T x T``), plus one chunk's float32 score buffer
    ``rows x heads x chunk x keys`` (two in a grad layer's backward) and the float32 key copy.
    """
    if not (s.probe_layers or s.response_probe_layers):
        return 0
    t = facts.text
    rows, T, N = s.micro_rows, s.response_tokens, s.image_tokens
    plain = s.probe_layers - s.grad_probe_layers
    results = (plain + s.grad_probe_layers * t.heads) * rows * T * N * F32
    results += s.response_probe_layers * rows * T * T * F32
    keys = s.prompt_tokens + s.response_tokens
    buffers = (2 if s.grad_probe_layers else 1) * rows * t.heads * min(s.probe_chunk, T) * keys * F32
    return results + buffers + rows * keys * t.kv_dim * F32


def no_grad_forward_bytes(facts: ModelFacts, s: StepShape) -> int:
    """Peak of one extra no-grad forward of the micro-batch (masked image, reference): one
    layer's working set over the tokens, and the response rows' logits with the chunk buffers.
    """
    t, b = facts.text, facts.compute_bytes
    working = b * (2 * t.hidden + 2 * t.q_dim + 2 * t.kv_dim + 3 * t.inter)
    rows_T = s.micro_rows * s.response_tokens
    return s.forward_tokens() * working + rows_T * t.vocab * b + 3 * min(s.logprob_chunk, rows_T) * t.vocab * F32


def kv_cache_bytes(facts: ModelFacts, s: StepShape) -> int:
    """The ``hf`` engine's KV cache: every rollout row of the rank, ``P + T`` tokens, every layer."""
    t = facts.text
    return s.prompts * s.G * (s.prompt_tokens + s.response_tokens) * t.layers * 2 * t.kv_dim * facts.compute_bytes


@dataclass
class MemoryPlan:
    """Estimated bytes per GPU for one GPU count (``rows``: name -> bytes; ``peak``: the max phase)."""

    gpus: int
    rows: dict[str, int] = field(default_factory=dict)
    peak: int = 0
    rollout_tokens: int = 0
    warnings: list[str] = field(default_factory=list)


def plan_memory(facts: ModelFacts, s: StepShape, gpus: int, sharded: bool, gpu_memory: float,
                runtime_overhead: float = 0.0) -> MemoryPlan:
    """Per-GPU memory of one RL step on ``gpus`` GPUs (FSDP if ``sharded``, else DDP).

    Args:
        gpu_memory: bytes of one GPU (warnings when the peak does not fit).
        runtime_overhead: bytes of the CUDA context and allocator slack, added to the peak.
    """
    shard = gpus if sharded else 1
    weights = math.ceil(facts.weight_bytes / shard)
    grads = math.ceil(facts.trainable_bytes / shard)
    optim = 2 * grads
    rows = {
        "weights": weights,
        "reference copy": weights if s.reference and s.reference_copy else 0,
        "gradients": grads + (grads if gpus > 1 and not sharded else 0),
        "optimiser": optim,
        "activations": activation_bytes(facts, s),
        "probe": probe_bytes(facts, s),
        "masked-image forward": no_grad_forward_bytes(facts, s) if s.masked_forward else 0,
        "reference forward": no_grad_forward_bytes(facts, s) if s.reference else 0,
        "rollout KV cache": kv_cache_bytes(facts, s) if s.engine == "hf" else 0,
        "vLLM share": int(s.vllm_share * gpu_memory) if s.engine == "vllm" else 0,
    }
    state = rows["weights"] + rows["reference copy"] + optim
    train = (state + rows["gradients"] + rows["activations"] + rows["probe"]
             + max(rows["masked-image forward"], rows["reference forward"]))
    rollout = state + rows["rollout KV cache"]
    plan = MemoryPlan(gpus, rows, int(max(train, rollout) + rows["vLLM share"] + runtime_overhead),
                      s.rollout_tokens(gpus))
    if plan.peak > gpu_memory:
        plan.warnings.append(f"{gpus} GPU(s): estimated peak {plan.peak / GIB:.1f} GiB exceeds "
                             f"{gpu_memory / GIB:.0f} GiB per GPU")
    if s.engine == "vllm" and facts.serve_bytes > rows["vLLM share"]:
        plan.warnings.append(f"{gpus} GPU(s): vLLM's share ({rows['vLLM share'] / GIB:.1f} GiB) cannot hold its "
                             f"copy of the weights ({facts.serve_bytes / GIB:.1f} GiB)")
    return plan
