"""Each loader reads its benchmark's download as ``huggingface-cli download`` leaves it
(fixtures.py builds them).
"""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest

from tests.evaluation import breadth_fixtures
from tests.evaluation.fixtures import BUILDERS, FIXTURE_OF, GOLD, SPLIT_BUILDERS, png, wemath
from visgrpo.evaluation.benchmarks import BENCHMARKS, Benchmark, load_benchmark
from visgrpo.evaluation.scoring import SCORERS
from visgrpo.evaluation.sources import ImageRef


def test_every_benchmark_has_a_fixture_and_a_typed_spec():
    assert set(BUILDERS) == set(GOLD)
    assert set(BENCHMARKS) == set(BUILDERS) | set(FIXTURE_OF) | set(breadth_fixtures.BUILDERS)
    assert set(breadth_fixtures.BUILDERS) == set(breadth_fixtures.GOLD)
    for name, spec in BENCHMARKS.items():
        assert isinstance(spec, Benchmark) and spec.name == name
        assert spec.scorer in SCORERS and spec.source


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_loader_reads_the_real_layout(tmp_path, name):
    BUILDERS[name](tmp_path / name)
    items = load_benchmark(name, tmp_path / name)
    got = [(it.id, it.scorer, it.category, it.answer) for it in items]
    assert got == GOLD[name]
    assert len({it.id for it in items}) == len(items)  # ids key predictions and resumes
    for it in items:
        for im in it.images:
            pil = im.load() if isinstance(im, ImageRef) else im
            assert pil.mode == "RGB" and pil.size[0] > 0
        assert it.question and "<image>" not in it.question


def test_mathvista_keeps_the_official_fields(tmp_path):
    BUILDERS["mathvista_testmini"](tmp_path)
    a, b, c, *_ = load_benchmark("mathvista_testmini", tmp_path)  # the test shards are ignored
    assert a.meta["choices"] == ["blue", "red", "green"] and "(B) red" in a.question
    assert (b.meta["answer_type"], b.meta["precision"]) == ("float", 1.0)
    assert c.meta["question_type"] == "free_form" and c.meta["answer_type"] == "integer"


def test_mathverse_vision_only_gets_the_option_list(tmp_path):
    BUILDERS["mathverse_testmini"](tmp_path)
    text_dominant, vision_only, free = load_benchmark("mathverse_testmini", tmp_path)
    assert vision_only.meta["options"] == ["30°", "45°", "60°", "90°"]
    assert text_dominant.meta["options"] == vision_only.meta["options"]
    assert "Choices" not in vision_only.question  # the model sees the options in the image only
    assert "options" not in free.meta


def test_hallusionbench_reads_both_splits(tmp_path):
    BUILDERS["hallusionbench"](tmp_path)
    items = load_benchmark("hallusionbench", tmp_path)
    assert [len(it.images) for it in items] == [1, 1, 1, 1, 0]
    assert items[-1].meta["figure_id"] == "0" and items[-1].meta["category"] == "VS"


@pytest.mark.parametrize("parquet", [True, False])
def test_wemath_reads_embedded_images_else_the_zip_by_step_folder(tmp_path, parquet):
    wemath(tmp_path, parquet=parquet)
    items = load_benchmark("wemath", tmp_path)
    sizes = [it.images[0].load().size for it in items]  # each row's own image, widths 40, 44, ..
    assert sizes == [(40 + 4 * n, 30) for n in range(len(items))]
    assert items[0].meta == {"problem": "2steps_1", "key": "2steps_1"}


def test_wemath_unpacked_archive_is_read_the_same(tmp_path):
    wemath(tmp_path, parquet=False)
    with zipfile.ZipFile(tmp_path / "testmini.zip") as z:
        z.extractall(tmp_path)
    (tmp_path / "testmini.zip").unlink()
    items = load_benchmark("wemath", tmp_path)
    assert [it.images[0].load().size[0] for it in items] == [40 + 4 * n for n in range(len(items))]


def test_wemath_ambiguous_path_is_one_clear_error(tmp_path):
    wemath(tmp_path, parquet=False)
    for top in ("a", "b"):  # two unpacked copies: 2steps/image/1-1.png exists twice
        (tmp_path / top / "2steps" / "image").mkdir(parents=True)
        (tmp_path / top / "2steps" / "image" / "1-1.png").write_bytes(png())
    with pytest.raises(ValueError, match=r"record '2steps_1/2steps_1': image_path "
                                         r"'2steps/image/1-1.png' is ambiguous"):
        load_benchmark("wemath", tmp_path)


def test_wemath_missing_image_names_record(tmp_path):
    wemath(tmp_path, parquet=False)
    rows = json.loads((tmp_path / "testmini.json").read_text())
    rows[1]["image_path"] = "2steps/image/404.png"
    (tmp_path / "testmini.json").write_text(json.dumps(rows))
    with pytest.raises(ValueError, match=r"record '2steps_1/2steps_2': image_path .* not found"):
        load_benchmark("wemath", tmp_path)


def test_missing_column_names_record_and_column(tmp_path):
    wemath(tmp_path, parquet=False)
    rows = json.loads((tmp_path / "testmini.json").read_text())
    del rows[1]["option"]
    (tmp_path / "testmini.json").write_text(json.dumps(rows))
    with pytest.raises(ValueError, match=r"record '2steps_1/2steps_2': column 'option' is missing"):
        load_benchmark("wemath", tmp_path)


@pytest.mark.parametrize("name, ids", [
    ("refcoco", ["0#0", "0#1", "1#0"]), ("refcoco_test", ["test0#0", "test0#1"]),
    ("refcoco_testA", ["testA0#0", "testA0#1", "testA1#0"]), ("refcoco_testB", ["testB0#0", "testB0#1"]),
])
def test_refcoco_reads_only_its_split(tmp_path, name, ids):
    BUILDERS["refcoco"](tmp_path)
    assert [it.id for it in load_benchmark(name, tmp_path)] == ids


@pytest.mark.parametrize("name, n", [("refcocoplus_val", 3), ("refcocoplus_testA", 3),
                                     ("refcocoplus_testB", 2), ("refcocog_val", 3),
                                     ("refcocog_test", 2)])
def test_refcoco_plus_and_g_downloads(tmp_path, name, n):
    SPLIT_BUILDERS[FIXTURE_OF[name]](tmp_path)
    items = load_benchmark(name, tmp_path)
    assert len(items) == n and all(it.scorer == "box" for it in items)


def test_refcoco_missing_split_is_one_line(tmp_path):
    BUILDERS["refcoco"](tmp_path)
    for f in (tmp_path / "data").glob("testB-*"):
        f.unlink()
    with pytest.raises(FileNotFoundError, match="no files of split 'testB'"):
        load_benchmark("refcoco_testB", tmp_path)


def test_jxu124_refcoco_schema(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "coco" / "train2014").mkdir(parents=True)
    (tmp_path / "coco" / "train2014" / "COCO_train2014_000000000001.jpg").write_bytes(png(60, 40))
    rows = [{"ref_id": 7, "sentences": [{"raw": "Left Dog", "sent": "left dog", "sent_id": 1}],
             "bbox": [1.0, 2.0, 30.0, 20.0], "image_path": "coco/train2014/COCO_train2014_000000000001.jpg",
             "split": "val", "raw_anns": "{}"}]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "validation-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "testA-00000-of-00001.parquet")
    (it,) = load_benchmark("refcoco", tmp_path)
    assert (it.id, it.question, it.answer) == ("7#0", "left dog", [1.0, 2.0, 30.0, 20.0])
    assert it.images[0].load().size == (60, 40)
    assert load_benchmark("refcocoplus_val", tmp_path)[0].id == "7#0"  # same loader


def test_hallusionbench_authors_json(tmp_path):
    (tmp_path / "hallusion_bench" / "VD" / "ocr").mkdir(parents=True)
    (tmp_path / "hallusion_bench" / "VD" / "ocr" / "0_0.png").write_bytes(png())
    rows = [{"category": "VD", "subcategory": "ocr", "visual_input": "1", "set_id": "0",
             "figure_id": "0", "question_id": "0", "question": "Q?", "gt_answer": "1",
             "gt_answer_details": "", "filename": "./hallusion_bench/VD/ocr/0_0.png"},
            {"category": "VS", "subcategory": "map", "visual_input": "0", "set_id": "0",
             "figure_id": "0", "question_id": "0", "question": "Q?", "gt_answer": "0",
             "gt_answer_details": "", "filename": None}]
    (tmp_path / "HallusionBench.json").write_text(json.dumps(rows))
    a, b = load_benchmark("hallusionbench", tmp_path)
    assert a.images[0].load().size == (56, 42) and b.images == [] and b.answer == "no"


def test_logicvista_empty_and_numeric_answers_load(tmp_path):
    BUILDERS["logicvista"](tmp_path)
    shutil.rmtree(tmp_path / "data" / "images")
    items = load_benchmark("logicvista", tmp_path)  # images decode lazily
    assert [it.answer for it in items] == ["A", "B, D", "3", ""]
    with pytest.raises(ValueError, match=r"record 'v1_0': field 'image'"):
        items[0].images[0].load()


def test_a_file_name_found_twice_is_named_ambiguous(tmp_path):
    from visgrpo.evaluation.sources import load_image

    for sub in ("VD/ocr", "VS/map"):
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / "0_0.png").write_bytes(png())
    with pytest.raises(ValueError, match=r"record 'r1': field 'image': .*ambiguous"):
        load_image("./hallusion_bench/X/0_0.png", tmp_path, "r1", "image")
