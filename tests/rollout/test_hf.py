"""HFRolloutEngine on tiny real-architecture models: layout, teacher-forced logits, vision tokens."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from tests.rollout.conftest import make_rows, prompt_batch
from visgrpo.data.batch import RolloutBatch
from visgrpo.rollout import HFRolloutEngine, SamplingConfig
from visgrpo.rollout.vision import vision_token_ids

G = 3


class Force(LogitsProcessor):
    """Force token ``plan[step]`` at generation step ``step`` for the rows in ``rows`` (all if
    None); ids in ``ban`` are never sampled otherwise.
    """

    def __init__(self, prompt_len: int, plan: dict[int, int], rows=None, ban=()):
        self.prompt_len, self.plan, self.rows, self.ban = prompt_len, plan, rows, list(ban)

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_len
        scores[:, self.ban] = -float("inf")
        if step in self.plan:
            rows = range(scores.shape[0]) if self.rows is None else self.rows
            for r in rows:
                scores[r] = -float("inf")
                scores[r, self.plan[step]] = 0.0
        return scores


def _prompt_len(processor, pb) -> int:
    from visgrpo.rollout.assemble import encode_prompts

    return encode_prompts(processor, pb)["input_ids"].shape[1]


def _teacher_forced_logits(model, batch: RolloutBatch) -> torch.Tensor:
    """Logits predicting response token t (row P + t - 1), [B, T, V]."""
    with torch.no_grad():
        logits = model(**batch.model_inputs()).logits
    P, T = batch.prompt_length, batch.response_length
    return logits[:, P - 1 : P - 1 + T]


def test_layout(tiny):
    model, processor = tiny
    tok = processor.tokenizer
    pb = prompt_batch(processor)
    eos = tok.eos_token_id
    # rows 0 and 3 (first response of each prompt) emit EOS at step 2 -> length 3
    force = Force(_prompt_len(processor, pb), {2: eos}, rows=[0, 3])
    engine = HFRolloutEngine(generate_kwargs={"logits_processor": LogitsProcessorList([force])})
    rb = engine.generate(
        model, processor, pb, SamplingConfig(max_new_tokens=6, num_generations=G), seed=1
    )
    B, P, T = 2 * G, rb.prompt_length, rb.response_length
    assert rb.input_ids.shape == (B, P + T) and rb.response_ids.shape == (B, T)
    assert rb.group_ids.tolist() == [0, 0, 0, 1, 1, 1]
    # prompts: the longer one fills P; the shorter is LEFT padded; all end at column P-1
    lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in pb.prompts]
    img_tokens = [int(torch.tensor(s["grid_thw"]).prod(-1).sum()) // 4 for s in pb.samples]
    expanded = [
        n - 1 + k for n, k in zip(lengths, img_tokens, strict=True)
    ]  # one placeholder -> k pads
    assert max(expanded) == P
    for b in range(B):
        pad = P - expanded[b // G]
        assert rb.attention_mask[b, :pad].sum() == 0 and rb.attention_mask[b, pad:P].all()
    # responses: right padded, EOS kept, nothing after it
    n_resp = rb.response_mask.sum(-1)
    for b in range(B):
        n = int(n_resp[b])
        assert rb.response_mask[b, :n].all() and not rb.response_mask[b, n:].any()
        assert torch.equal(rb.input_ids[b, P:], rb.response_ids[b])
        assert torch.equal(rb.attention_mask[b, P:].bool(), rb.response_mask[b])
        assert (rb.response_ids[b, n:] == tok.pad_token_id).all()
        assert rb.samples[b]["response_length"] == n and rb.samples[b]["id"] == f"r{b // G}"
        ids = rb.response_ids[b, :n].tolist()
        assert rb.completions[b] == tok.decode(ids, skip_special_tokens=True)
        assert bool(rb.truncated[b]) == (eos not in ids)
    assert n_resp[0] == 3 and n_resp[3] == 3 and rb.response_ids[0, 2] == eos
    assert not rb.truncated[0] and not rb.truncated[3]
    # pixels: each response carries exactly its prompt's single-prompt processor output
    for i, row in enumerate(make_rows()):
        single = processor(text=[pb.prompts[i]], images=[row["image"]], return_tensors="pt")
        rows = single["pixel_values"].shape[0]
        assert rb.pixel_counts[i * G : (i + 1) * G].tolist() == [rows] * G
        for g in range(G):
            part = rb.select([i * G + g])
            assert torch.equal(part.pixel_values, single["pixel_values"])
            assert torch.equal(part.image_grid_thw, single["image_grid_thw"])
    # image slots: as many as image-pad tokens in the row; grid x patch = resized size
    pad_id = processor.image_token_id
    assert rb.image_mask.sum(-1).tolist() == (rb.input_ids == pad_id).sum(-1).tolist()
    s = rb.samples[0]
    assert [g[1] * 14 for g in s["grid_thw"]] == [hw[0] for hw in s["resized_hw"]]


@pytest.mark.parametrize("tiny", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"], indirect=True)
@pytest.mark.parametrize("do_sample", [True, False])
def test_teacher_forced_logits_match_generation(tiny, do_sample):
    model, processor = tiny
    engine = HFRolloutEngine(return_logits=True)
    sampling = SamplingConfig(max_new_tokens=5, num_generations=2, do_sample=do_sample)
    rb = engine.generate(model, processor, prompt_batch(processor), sampling, seed=3)
    tf = _teacher_forced_logits(model, rb)
    clean = (rb.vision_tokens == 0).nonzero().flatten()  # stripped rows are not generation-aligned
    assert len(clean) >= 2
    diff = (tf - rb.generation_logits).abs().amax(-1)  # [B, T]
    assert float(diff[clean][rb.response_mask[clean]].max()) < 1e-4
    if not do_sample:  # greedy: the G copies are identical
        assert torch.equal(rb.response_ids[0], rb.response_ids[1])


def test_seed_reproducible_and_global_rng_untouched(tiny):
    model, processor = tiny
    pb, engine = prompt_batch(processor), HFRolloutEngine()
    sampling = SamplingConfig(max_new_tokens=4, num_generations=2)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = engine.generate(model, processor, pb, sampling, seed=7)
    assert torch.equal(torch.rand(3), expected_next)
    b = engine.generate(model, processor, pb, sampling, seed=7)
    assert torch.equal(a.response_ids, b.response_ids)


@pytest.mark.parametrize("mode", ["mask", "reject"])
def test_vision_tokens_never_reach_the_forward(tiny, mode):
    model, processor = tiny
    pb = prompt_batch(processor)
    tok = processor.tokenizer
    image_pad, vstart = (
        tok.convert_tokens_to_ids("<|image_pad|>"),
        tok.convert_tokens_to_ids("<|vision_start|>"),
    )
    force = Force(
        _prompt_len(processor, pb),
        {1: image_pad, 3: vstart},
        ban=vision_token_ids(tok) + [tok.eos_token_id, tok.pad_token_id],
    )
    engine = HFRolloutEngine(
        on_vision_token=mode, generate_kwargs={"logits_processor": LogitsProcessorList([force])}
    )
    rb = engine.generate(
        model, processor, pb, SamplingConfig(max_new_tokens=5, num_generations=2), seed=0
    )
    vis = torch.tensor(vision_token_ids(tok))
    assert not torch.isin(rb.input_ids[:, rb.prompt_length :], vis).any()
    assert rb.vision_tokens.tolist() == [2] * 4 and rb.metrics["rollout/vision_tokens"] == 8
    if mode == "mask":  # 5 generated - 2 removed = 3 tokens (no EOS was forced)
        assert rb.response_mask.sum(-1).tolist() == [3] * 4 and not rb.rejected.any()
    else:  # only the token before step 1 survives, and nothing is trained on
        assert rb.rejected.all() and not rb.response_mask.any()
        assert rb.attention_mask[:, rb.prompt_length :].sum(-1).tolist() == [1] * 4
    assert torch.isfinite(_teacher_forced_logits(model, rb)).all()  # image features still line up


def test_select_and_concat_preserve_rows(tiny):
    model, processor = tiny
    engine = HFRolloutEngine()
    sampling = SamplingConfig(max_new_tokens=4, num_generations=2)
    full = engine.generate(model, processor, prompt_batch(processor), sampling, seed=5)
    short = engine.generate(
        model, processor, prompt_batch(processor, make_rows()[1:]), sampling, seed=6
    )
    assert short.prompt_length < full.prompt_length
    # selecting responses 3 and 0: pixel rows are response 3's block then response 0's block
    sel = full.select(torch.tensor([3, 0]))
    starts = torch.cumsum(full.pixel_counts, 0) - full.pixel_counts
    expected = torch.cat(
        [full.pixel_values[starts[i] : starts[i] + full.pixel_counts[i]] for i in (3, 0)]
    )
    assert torch.equal(sel.pixel_values, expected)
    assert sel.group_ids.tolist() == [1, 0] and sel.samples[0]["id"] == "r1"
    mask_sel = full.select(torch.tensor([False, True, False, False]))
    assert torch.equal(mask_sel.response_ids, full.response_ids[1:2])
    # concat re-pads (short prompts get more left padding) and keeps group ids distinct
    cat = RolloutBatch.concat([sel, short])
    assert cat.prompt_length == full.prompt_length and cat.batch_size == 4
    assert cat.group_ids.tolist() == [1, 0, 2, 2]
    assert cat.pixel_values.shape[0] == sel.pixel_values.shape[0] + short.pixel_values.shape[0]
    # the padded layout gives the same logits as each part alone
    parts = [_teacher_forced_logits(model, b) for b in (sel, short)]
    together = _teacher_forced_logits(model, cat)
    for k, (part, b) in enumerate(zip(parts, (sel, short), strict=True)):
        rows = slice(0, 2) if k == 0 else slice(2, 4)
        m = b.response_mask
        T = b.response_length
        assert (together[rows, :T][m] - part[m]).abs().max() < 1e-4


def test_peft_model_and_train_mode_restored(tiny_model_dirs):
    from visgrpo.models.loading import PolicyConfig, load_policy
    from visgrpo.models.lora import LoraSettings

    model, processor = load_policy(
        PolicyConfig(tiny_model_dirs["qwen2_vl"], lora=LoraSettings(r=4, dropout=0.1))
    )
    model.train()
    rb = HFRolloutEngine().generate(
        model,
        processor,
        prompt_batch(processor),
        SamplingConfig(max_new_tokens=3, num_generations=2),
        seed=0,
    )
    assert model.training and all(m.training for m in model.modules())
    assert rb.batch_size == 4 and rb.response_mask.any()
