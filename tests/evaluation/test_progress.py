"""The prediction journal (append, torn tails, run fingerprints) and the rank sharding."""

from __future__ import annotations

import json

import pytest

from visgrpo.evaluation.items import EvalItem
from visgrpo.evaluation.progress import (
    Journal,
    append_records,
    assemble,
    items_digest,
    model_fingerprint,
    read_records,
)
from visgrpo.evaluation.ranks import Ranks, n_batches


def items(n: int) -> list[EvalItem]:
    return [EvalItem(str(i), [], f"q{i}", "A", "choice", "c") for i in range(n)]


def test_torn_last_line_is_ignored_then_cut_by_its_owner(tmp_path):
    path = tmp_path / "j.jsonl"
    append_records(path, [{"a": 1}, {"b": "é"}])
    with open(path, "ab") as fh:  # a kill in the middle of an append
        fh.write(b'{"batch": 3, "ite')
    assert read_records(path) == [{"a": 1}, {"b": "é"}]
    assert path.read_bytes().endswith(b'"ite')  # a reader that does not own it leaves it
    assert read_records(path, repair=True) == [{"a": 1}, {"b": "é"}]
    append_records(path, [{"c": 2}])
    assert read_records(path) == [{"a": 1}, {"b": "é"}, {"c": 2}]
    assert path.read_text(encoding="utf-8").count("\n") == 3


def test_a_corrupt_complete_line_is_one_line_error(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"j.jsonl: line 2 is not JSON.*--restart"):
        read_records(path)


def test_journal_collects_every_rank_and_refuses_another_run(tmp_path):
    its = items(5)
    header = {"protocol": "greedy"}
    r0, r1 = Journal(tmp_path, header, 0), Journal(tmp_path, header, 1)
    r0.record(0, its[0:2], [["a0"], ["a1"]])
    r1.record(1, its[2:4], [["b2"], ["b3"]])
    r0.record(2, its[4:5], [["c4"]])
    done = Journal(tmp_path, header, 0).done(its, batch_size=2)
    assert sorted(done) == [0, 1, 2]
    assert assemble(its, done, batch_size=2) == [["a0"], ["a1"], ["b2"], ["b3"], ["c4"]]
    lines = (tmp_path / "part-000.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"run": header} and len(lines) == 3

    other = Journal(tmp_path, {**header, "protocol": "avg@8"}, 0)
    with pytest.raises(ValueError, match=r"another run \(protocol: 'greedy' there, 'avg@8' now\)"):
        other.check()
    other.clear()
    assert other.done(its, batch_size=2) == {}


def test_assemble_names_a_missing_batch_and_restores_run_fields(tmp_path):
    its = items(3)
    j = Journal(tmp_path, {"x": 1})
    its[0].meta["width"] = 56
    j.record(0, its[0:1], [["a"]])
    its[0].meta.clear()
    with pytest.raises(ValueError, match="batch 1 .*'1'.* has no predictions"):
        assemble(its, j.done(its, 1), batch_size=1)
    j.record(1, its[1:2], [["b"]])
    j.record(2, its[2:3], [["c"]])
    assert assemble(its, j.done(its, 1), batch_size=1) == [["a"], ["b"], ["c"]]
    assert its[0].meta == {"width": 56}  # a grounding item's size, set when its prompt was built


def test_digest_and_fingerprint_change_with_their_inputs(tmp_path):
    its = items(3)
    changed = items(3)
    changed[1].question = "another question"
    assert items_digest(its) == items_digest(items(3)) != items_digest(changed)
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"1")
    before = model_fingerprint(model)
    (model / "model.safetensors").write_bytes(b"22")
    assert model_fingerprint(model) != before


def test_ranks_from_torchrun_env_shard_whole_batches_round_robin():
    assert Ranks.from_env({}) == Ranks(0, 1, 0)
    r = Ranks.from_env({"RANK": "1", "WORLD_SIZE": "3", "LOCAL_RANK": "1"})
    assert (r.rank, r.world, r.main) == (1, 3, False)
    assert r.batches(n_batches(17, 2)) == [1, 4, 7]  # 9 batches: 0..8
    shards = [Ranks(k, 3).batches(9) for k in range(3)]
    assert sorted(b for s in shards for b in s) == list(range(9))
    with pytest.raises(ValueError, match="need 0 <= RANK < WORLD_SIZE"):
        Ranks.from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_a_batch_recorded_for_other_items_is_not_done(tmp_path):
    """``--limit 3`` then ``--limit 5`` with batches of 2: batch 1 held item 2 alone, now
    items 2 and 3, so it is generated again; batch 0 is reused.
    """
    j = Journal(tmp_path, {"x": 1})
    first = items(3)
    j.record(0, first[0:2], [["a0"], ["a1"]])
    j.record(1, first[2:3], [["a2"]])
    more = items(5)
    assert sorted(j.done(more, batch_size=2)) == [0]
    j.record(1, more[2:4], [["b2"], ["b3"]])
    j.record(2, more[4:5], [["b4"]])
    done = Journal(tmp_path, {"x": 1}).done(more, batch_size=2)
    assert assemble(more, done, 2) == [["a0"], ["a1"], ["b2"], ["b3"], ["b4"]]
    assert assemble(first, Journal(tmp_path, {"x": 1}).done(first, 2), 2) == [["a0"], ["a1"], ["a2"]]
