"""The breadth benchmarks: real-layout loading, official scorers on realistic free-text
outputs (each expected value derived by hand from the official rule cited), composite
metrics, and one-line errors on bad records.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from tests.evaluation import breadth_fixtures as fx
from visgrpo.evaluation.benchmarks import BENCHMARKS, load_benchmark
from visgrpo.evaluation.benchmarks.blink import blink_metrics
from visgrpo.evaluation.benchmarks.cv_bench import cv_bench_metrics
from visgrpo.evaluation.benchmarks.dynamath import dynamath_metrics
from visgrpo.evaluation.benchmarks.mmmu_pro import mmmu_pro_metrics
from visgrpo.evaluation.benchmarks.mmvp import mmvp_metrics
from visgrpo.evaluation.scoring import score
from visgrpo.evaluation.scoring_mathvision import extract_answer, is_equal
from visgrpo.evaluation.scoring_mmmu import parse_open_response


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return fx.build_all(tmp_path_factory.mktemp("breadth"))


@pytest.fixture(scope="module")
def items(root):
    return {name: {i.id: i for i in load_benchmark(name, root / name)} for name in fx.GOLD}


@pytest.mark.parametrize("name", sorted(fx.GOLD))
def test_loaders_read_the_real_layout(root, name):
    items = load_benchmark(name, root / name)
    assert [(i.id, i.scorer, i.category, i.answer) for i in items] == fx.GOLD[name]
    assert BENCHMARKS[name].source
    for item in items:
        assert item.question.strip()
        for image in item.images:
            assert image.load().mode == "RGB"


def test_mmmu_images_follow_their_tags(items):
    two = items["mmmu"]["validation_Accounting_2"]  # "Compare <image 2> with <image 1>"
    assert [im.load().size for im in two.images] == [(30, 20), (56, 42)]
    assert "[image]" in two.question and "<image" not in two.question
    assert len(items["mmmu"]["validation_Music_3"].images) == 2  # the tag appears twice
    assert items["mmmu"]["validation_Accounting_1"].question.endswith("C. $3,000\nD. $4,000")
    vision = items["mmmu_pro"]["vision/test_Physics_1"]
    assert vision.question.startswith("Write out the multiple-choice question in the image")
    assert len(items["blink"]["val_Jigsaw_1"].images) == 3


def test_mmmu_merged_release(tmp_path):
    """lmms-lab/MMMU: all subjects in one ``data/validation-*.parquet``; same items."""
    import pyarrow.parquet as pq

    fx.mmmu(tmp_path / "per_subject")
    rows = [r for s in ("Accounting", "Music") for r in pq.read_table(
        tmp_path / "per_subject" / s / "validation-00000-of-00001.parquet").to_pylist()]
    schema = fx._mmmu_schema([("question_type", pa.string()), ("subfield", pa.string())])
    fx.write_parquet(tmp_path / "merged" / "data" / "validation-00000-of-00001.parquet", rows, schema)
    fx.write_parquet(tmp_path / "merged" / "data" / "dev-00000-of-00001.parquet", rows[:1], schema)
    got = [(i.id, i.category, i.answer) for i in load_benchmark("mmmu", tmp_path / "merged")]
    assert got == [(i, c, a) for i, _, c, a in fx.GOLD["mmmu"]]


def test_chartqa_huggingface_m4_release(tmp_path):
    fx.chartqa_m4(tmp_path)
    got = [(i.id, i.category, i.answer) for i in load_benchmark("chartqa", tmp_path)]
    assert got == [("0", "human_test", "41.5"), ("1", "augmented_test", "12%")]


def test_mmvp_lmms_eval_parquet(tmp_path):
    fx.mmvp_lmms(tmp_path)
    items = load_benchmark("mmvp", tmp_path)
    assert [(i.id, i.answer, i.meta["options"]) for i in items] == [
        ("1", "A", ["Yes", "No"]), ("2", "B", ["Yes", "No"])]
    assert items[0].images[0].load().size == (56, 42)


def _score(items, name, item_id, completion):
    return score(completion, items[name][item_id])


@pytest.mark.parametrize("completion, expected", [
    ("The answer is (B).", 1.0),                                   # "(B)" candidate
    ("B", 1.0),                                                     # " B " candidate
    ("The net income is $2,000 because revenue minus costs equals that.", 1.0),  # option text
    ("Looking at the table, A shows revenue; the answer is (D).", 0.0),  # brackets win
    ("I think it is A or B, but B is better", 1.0),                 # the last " X " wins
    ("<think>maybe (A)</think><answer>(B)</answer>", 1.0),           # the answer part only
])
def test_mmmu_multiple_choice(items, completion, expected):
    assert _score(items, "mmmu", "validation_Accounting_1", completion) == expected


@pytest.mark.parametrize("item_id, completion, expected", [
    ("validation_Accounting_2", "The ratio is 0.5.", 1.0),   # 0.5 == float("0.5")
    ("validation_Accounting_2", "Ratio = 1/2", 1.0),         # "1/2" inside the key response
    ("validation_Accounting_2", "The ratio is 2.", 0.0),
    ("validation_Music_4", "There are 3 beats per bar.", 1.0),  # no indicator: whole + numbers
    ("validation_Music_4", "3/4 time, so the answer is 3", 1.0),  # shortest tail "3"
    ("validation_Music_4", "It is 4 beats.", 0.0),
])
def test_mmmu_open(items, item_id, completion, expected):
    assert _score(items, "mmmu", item_id, completion) == expected


def test_mmmu_open_parse_matches_the_official_rule():
    # eval_utils.py L122-171 by hand: key tails "0.5"; numbers ["0.5"]; normalised 0.5
    assert parse_open_response("The ratio is 0.5.") == [0.5]
    assert sorted(map(str, parse_open_response("Ratio = 1/2"))) == ["1.0", "1/2", "2.0"]


def test_mmmu_random_guess_is_seeded_by_record(items):
    item = items["mmmu"]["validation_Accounting_1"]
    first = [score("I cannot say.", item) for _ in range(3)]
    assert len(set(first)) == 1  # the same guess every time and in any order


@pytest.mark.parametrize("item_id, completion, expected", [
    ("standard (10 options)/test_Physics_1", "Therefore the mass is 19 kg.\nAnswer: J", 1.0),
    ("standard (10 options)/test_Physics_1", "Answer: The correct option is J", 1.0),
    ("standard (10 options)/test_Physics_1", "The mass is 19 kg, option (J).", 1.0),
    ("standard (10 options)/test_Physics_1", "Answer: A or J", 1.0),  # not unique: last " J "
    ("standard (10 options)/test_Art_2", "Answer: C", 0.0),
    ("standard (10 options)/test_Art_2", "It is clearly Cubism, with its facets.\nAnswer: B", 1.0),
    ("vision/test_Physics_1", "The question asks for the mass.\nAnswer: J", 1.0),
])
def test_mmmu_pro(items, item_id, completion, expected):
    assert _score(items, "mmmu_pro", item_id, completion) == expected


@pytest.mark.parametrize("item_id, completion, expected", [
    ("1", "The shaded area matches option C.", 1.0),        # ends with " C."
    ("1", "The answer is 3", 1.0),                          # the gold option's value
    ("1", "so \\boxed{D}", 0.0),
    ("2", "The side is \\boxed{1.5}", 1.0),                 # 1.5 == 3/2 to 2 decimals
    ("2", "The answer is $\\frac{3}{2}$.", 1.0),
    ("2", "so the length is 3/2.", 0.0),                    # officially unparsed: a miss
    ("3", "The point is \\boxed{(2, 3)}", 1.0),
    ("3", "\\boxed{(3,2)}", 0.0),
])
def test_mathvision(items, item_id, completion, expected):
    assert _score(items, "mathvision", item_id, completion) == expected


def test_mathvision_rules_by_hand():
    assert extract_answer("The answer is $\\frac{3}{2}$.") == "\\frac{3}{2}"
    assert extract_answer("The side is \\boxed{1.5 units}") == "1.5"
    assert is_equal("0.333", "\\frac{1}{3}")        # both 0.33
    assert is_equal("(2,3)", "(2.0, 3)")             # tuples evaluated element-wise
    assert not is_equal("", "1")
    assert not is_equal("x+1", "x+2")


@pytest.mark.parametrize("item_id, completion, expected", [
    ("0", "41.5", 1.0),
    ("0", "<answer>42</answer>", 1.0),          # 1.2% off
    ("0", "\\boxed{44}", 0.0),                  # 6% off
    ("0", "The peak is 41.5", 0.0),             # not a number, not the same text
    ("1", "japan.", 1.0),
    ("2", "0.12", 1.0),                         # "12%" is 0.12
    ("2", "12", 0.0),
    ("3", "0", 1.0),
    ("3", "0.0", 0.0),                          # a zero gold is compared as text
])
def test_chartqa_relaxed_accuracy(items, item_id, completion, expected):
    assert _score(items, "chartqa", item_id, completion) == expected


@pytest.mark.parametrize("item_id, completion, expected", [
    ("1/1", '{"solution": "rise over run", "short answer": "0.500"}', 1.0),  # the authors' JSON
    ("1/1", "The slope is \\boxed{0.5004}", 1.0),       # within 0.001
    ("1/1", "<answer>0.51</answer>", 0.0),
    ("2/1", "<answer>-2 (it falls)</answer>", 1.0),     # first token "-2"
    ("1/2", "<answer>B</answer>", 1.0),
    ("1/2", "<answer>(B) the second graph</answer>", 1.0),  # "B" within the first 3 chars
    ("1/2", "<answer>Graph B</answer>", 0.0),               # "B" is not in "Gra"
])
def test_dynamath(items, item_id, completion, expected):
    assert _score(items, "dynamath", item_id, completion) == expected


def test_choice_benchmarks(items):
    assert _score(items, "cv_bench", "2D_0", "There are two cars, so the answer is (C).") == 1.0
    assert _score(items, "cv_bench", "2D_0", "<answer>2</answer>") == 1.0  # the option's text
    assert _score(items, "mmvp", "3", "The door is closed, so the answer is (B).") == 1.0
    assert _score(items, "mmvp", "3", "<answer>Open</answer>") == 0.0
    assert _score(items, "blink", "val_Jigsaw_1", "<answer>the second piece</answer>") == 1.0
    assert _score(items, "mmk12", "math_12", "So the answer is C.") == 1.0
    assert _score(items, "mmk12", "math_12", "<answer>60°</answer>") == 1.0  # the option's text
    assert items["mmk12"]["math_12"].question.startswith("As shown")     # <image> removed
    assert _score(items, "clevr_count", "1", "I count <answer>10</answer>") == 1.0
    assert _score(items, "clevr_count", "1", "<answer>10.0</answer>") == 1.0
    assert _score(items, "clevr_count", "1", "<answer>10.4</answer>") == 0.0


def test_composite_metrics(items):
    cv = list(items["cv_bench"].values())  # ADE20K, COCO, COCO, Omni3D, Omni3D
    m = cv_bench_metrics(cv, [""] * 5, [1, 0, 1, 1, 0])
    assert m["2d"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["3d"] == pytest.approx(0.5) and m["overall"] == pytest.approx(0.625)
    mmvp = list(items["mmvp"].values())  # pairs (1, 2) and (3, 4)
    assert mmvp_metrics(mmvp, [""] * 4, [1, 1, 1, 0]) == {"pair_accuracy": 0.5}
    pro = list(items["mmmu_pro"].values())
    assert mmmu_pro_metrics(pro, [""] * 3, [1, 0, 1])["overall"] == pytest.approx(0.75)
    dm = list(items["dynamath"].values())  # seeds 1, 2 in variants 1 and 2
    m = dynamath_metrics(dm, [""] * 4, [1, 1, 0, 1])  # seed 1 wrong in variant 2
    assert m == {"average_case": 0.75, "worst_case": 0.5}
    bl = list(items["blink"].values())  # Jigsaw (1 item), Relative_Depth (2 items)
    assert blink_metrics(bl, [""] * 3, [0, 1, 1]) == {"subtask_mean": 0.5}


def test_bad_records_are_one_line(tmp_path):
    fx.mmmu(tmp_path / "m")
    bad = tmp_path / "m" / "Accounting" / "validation-00000-of-00001.parquet"
    schema = fx._mmmu_schema([("question_type", pa.string()), ("subfield", pa.string())])
    fx.write_parquet(bad, [{**fx._no_images(), "id": "validation_Accounting_9",
                            "question": "<image 1> ?", "options": "not a list", "explanation": "",
                            "img_type": "", "answer": "A", "topic_difficulty": "",
                            "question_type": "multiple-choice", "subfield": ""}], schema)
    with pytest.raises(ValueError, match=r"record 'validation_Accounting_9': options 'not a list'"):
        load_benchmark("mmmu", tmp_path / "m")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="MMMU-Pro config folders"):
        load_benchmark("mmmu_pro", tmp_path / "empty")
    fx.mmvp(tmp_path / "v")
    csv_path = tmp_path / "v" / "Questions.csv"
    csv_path.write_text(csv_path.read_text().replace("(a) Yes (b) No,(b)", "(a) Yes (b) No,(c)"))
    with pytest.raises(ValueError, match=r"record '2': Correct Answer '\(c\)'"):
        load_benchmark("mmvp", tmp_path / "v")

