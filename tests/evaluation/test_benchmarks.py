"""Each loader reads its benchmark's published schema (fixtures.py builds them)."""

from __future__ import annotations

import pytest

from tests.evaluation import breadth_fixtures
from tests.evaluation.fixtures import BUILDERS, GOLD
from visgrpo.evaluation.benchmarks import BENCHMARKS, load_benchmark
from visgrpo.evaluation.sources import ImageRef


def test_every_benchmark_has_a_fixture():
    assert set(BUILDERS) == set(GOLD)
    assert set(BENCHMARKS) == set(BUILDERS) | set(breadth_fixtures.BUILDERS)
    assert set(breadth_fixtures.BUILDERS) == set(breadth_fixtures.GOLD)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_loader_reads_the_published_schema(tmp_path, name):
    BUILDERS[name](tmp_path / name)
    items = load_benchmark(name, tmp_path / name)
    got = [(it.id, it.scorer, it.category, it.answer) for it in items]
    assert got == GOLD[name]
    for it in items:
        for im in it.images:
            pil = im.load() if isinstance(im, ImageRef) else im
            assert pil.mode == "RGB" and pil.size[0] > 0
        assert it.question and "<image>" not in it.question


def test_mathvista_keeps_options_and_precision(tmp_path):
    BUILDERS["mathvista_testmini"](tmp_path)
    a, b, c = load_benchmark("mathvista_testmini", tmp_path)  # the test split is ignored
    assert a.meta["options"] == ["blue", "red", "green"] and "(B) red" in a.question
    assert b.meta["precision"] == 1.0 and c.meta["precision"] == 0  # integers: exact


def test_hallusionbench_text_only_question_has_no_image(tmp_path):
    BUILDERS["hallusionbench"](tmp_path)
    items = load_benchmark("hallusionbench", tmp_path)
    assert [len(it.images) for it in items] == [1, 0]


def test_missing_column_names_record_and_column(tmp_path):
    import json

    BUILDERS["wemath"](tmp_path)
    rows = json.loads((tmp_path / "testmini.json").read_text())
    del rows[1]["option"]
    (tmp_path / "testmini.json").write_text(json.dumps(rows))
    with pytest.raises(ValueError, match=r"record '2steps_1_1': column 'option' is missing"):
        load_benchmark("wemath", tmp_path)


def test_jxu124_refcoco_schema(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.evaluation.fixtures import png

    (tmp_path / "coco" / "train2014").mkdir(parents=True)
    (tmp_path / "coco" / "train2014" / "COCO_train2014_000000000001.jpg").write_bytes(png(60, 40))
    rows = [{"ref_id": 7, "sentences": [{"raw": "Left Dog", "sent": "left dog", "sent_id": 1}],
             "bbox": [1.0, 2.0, 30.0, 20.0], "image_path": "coco/train2014/COCO_train2014_000000000001.jpg",
             "split": "val", "raw_anns": "{}"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "val-00000-of-00001.parquet")
    (it,) = load_benchmark("refcoco", tmp_path)
    assert (it.id, it.question, it.answer) == ("7#0", "left dog", [1.0, 2.0, 30.0, 20.0])
    assert it.images[0].load().size == (60, 40)
