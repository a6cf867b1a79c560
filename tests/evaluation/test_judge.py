"""``visgrpo eval --judge URL`` against a real local HTTP server that serves scripted
OpenAI-style chat completions (issue 23, item 4).

Free-text answers the rules miss ("I believe the red one") are extracted by the judge as
the official MathVista / MathVerse scripts prompt it; MathVista's own shortcuts (an answer
that already parses as the integer asked for) send nothing; MathVerse's verdict is asked
again until it is 0 or 1; every reply is cached on disk, so a rerun sends nothing; the
table says which extraction produced each row; a judge that refuses fails only the judged
benchmarks.
"""

from __future__ import annotations

import csv
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.evaluation.fixtures import BUILDERS, png
from visgrpo.evaluation.cli import main
from visgrpo.evaluation.judge import Judge, JudgeConfig
from visgrpo.evaluation.judge_prompts import MATHVERSE_EXTRACT, MATHVISTA_EXTRACT

NAMES = ["mathvista_testmini", "mathverse_testmini", "mmstar"]
# Completions per (benchmark prompt text) fragment -> the model's free-text answer.
ANSWERS = {"(A) blue": "I believe the red one", "Length?": "one point two", "How many?": "1000",
           "Choices: A:1 B:2": "It must be the second option", "Find x.": "x is one half",
           "Options:": "A"}
# The judge's scripted replies, by the model response quoted in the prompt.
EXTRACT = {"I believe the red one": "B", "one point two": "1.2",
           "It must be the second option": "Extracted Answer: B", "x is one half": "1/2"}


class Server:
    """A local OpenAI-compatible endpoint; records every request."""

    def __init__(self, status: int = 200, fail_first: int = 0):
        self.requests, self.asked = [], {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, dict(self.headers), body))
                if status != 200 or len(server.requests) <= fail_first:
                    self.send_error(status if status != 200 else 503, "unavailable")
                    return
                reply = server.reply(body["messages"][0]["content"])
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data.encode())

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def reply(self, prompt: str) -> str:
        n = self.asked[prompt] = self.asked.get(prompt, 0) + 1
        if prompt.startswith("Below are two answers"):  # MathVerse verdict
            if "[Model_answer] : 1/2" in prompt:
                return "I would say yes" if n == 1 else "Judgement: 1"  # asked again
            return "Judgement: 1"
        return next(v for k, v in EXTRACT.items() if k in prompt)


class Scripted:
    def generate(self, model, processor, prompts, sampling, seed=None):
        texts = [next(v for k, v in ANSWERS.items() if k in p) for p in prompts.prompts]
        return SimpleNamespace(completions=[t for t in texts for _ in range(sampling.num_generations)])


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


def write_parquet(path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """MathVista and MathVerse rows of this test's own (the columns their downloads have),
    and MMStar from the shared fixtures (a benchmark scored by rules only).
    """
    root = tmp_path_factory.mktemp("bench")
    image = {"bytes": png(), "path": None}
    vista = {"image": "images/1.jpg", "decoded_image": image, "unit": None}
    write_parquet(root / "mathvista_testmini" / "data" / "testmini-00000-of-00001.parquet", [
        {**vista, "pid": "1", "question": "Which is red?", "choices": ["blue", "red", "green"],
         "precision": None, "answer": "red", "question_type": "multi_choice", "answer_type": "text",
         "query": "Hint: ...\nQuestion: Which is red?\nChoices:\n(A) blue\n(B) red\n(C) green"},
        {**vista, "pid": "2", "question": "Length?", "choices": None, "precision": 1.0,
         "answer": "1.2", "question_type": "free_form", "answer_type": "float", "query": "Length?"},
        {**vista, "pid": "3", "question": "How many?", "choices": None, "precision": None,
         "answer": "1000", "question_type": "free_form", "answer_type": "integer",
         "query": "How many?"}])
    verse = {"problem_index": "1", "image": image, "query_wo": "q"}
    write_parquet(root / "mathverse_testmini" / "testmini-00000-of-00001.parquet", [
        {**verse, "sample_index": "1", "problem_version": "Text Dominant",
         "question": "Choices: A:1 B:2", "question_for_eval": "Pick\nChoices:\nA:1\nB:2",
         "answer": "B", "question_type": "multi-choice", "query_cot": "Choices: A:1 B:2"},
        {**verse, "sample_index": "2", "problem_version": "Vision Only", "question": "Find x.",
         "question_for_eval": "Find x.", "answer": "\\frac{1}{2}", "question_type": "free-form",
         "query_cot": "Find x."}])
    BUILDERS["mmstar"](root / "mmstar")
    return root


def evaluate(model, root, out, *extra) -> dict[str, dict]:
    args = ["--model", model, "--data-root", str(root), "--benchmarks", *NAMES, "--out", str(out),
            "--no-mlflow", "--no-progress", *extra]
    assert main(args, engine=Scripted()) == 0
    with open(out / "results.csv") as fh:
        return {r["benchmark"]: r for r in csv.DictReader(fh) if r["category"] == "all"}


def test_judge_extracts_as_the_official_scripts_and_caches(tmp_path, data_root, tiny_model_dirs,
                                                           server, monkeypatch):
    model = tiny_model_dirs["qwen2_5_vl"]
    rules = evaluate(model, data_root, tmp_path / "rules")
    assert {k: r["extraction"] for k, r in rules.items()} == dict.fromkeys(NAMES, "rules")
    assert server.requests == []

    monkeypatch.setenv("MY_JUDGE_KEY", "sk-test")
    judge = ("--judge", server.url, "--judge-model", "scripted-judge",
             "--judge-api-key-env", "MY_JUDGE_KEY")
    judged = evaluate(model, data_root, tmp_path / "judged", *judge)
    assert {k: r["extraction"] for k, r in judged.items()} == {
        "mathvista_testmini": "judge:scripted-judge", "mathverse_testmini": "judge:scripted-judge",
        "mmstar": "rules"}
    assert float(judged["mathvista_testmini"]["accuracy"]) == 1.0
    assert float(judged["mathverse_testmini"]["accuracy"]) == 1.0
    assert "| mathvista_testmini | all | 3 | 100.0 | judge:scripted-judge |" in (
        tmp_path / "judged" / "results.md").read_text()

    # MathVista: 2 extractions ("1000" is its own, by the integer shortcut); MathVerse: 2
    # extractions and 3 verdicts (one asked twice).
    assert len(server.requests) == 7
    path, headers, body = server.requests[0]
    assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer sk-test"
    assert body["model"] == "scripted-judge" and body["temperature"] == 0
    prompts = {b["messages"][0]["content"]: b["max_tokens"] for _, _, b in server.requests}
    # MathVista create_test_prompt: demo prompt, the query, the response, "Extracted answer: "
    vista = next(p for p in prompts if "one point two" in p)
    assert vista == f"{MATHVISTA_EXTRACT.strip()}\n\nLength?\n\none point two\n\nExtracted answer: "
    assert prompts[vista] == 1024
    verse = next(p for p in prompts if "x is one half" in p)
    assert verse == f"{MATHVERSE_EXTRACT.strip()}\n\nModel response: 'x is one half'\nExtracted Answer: "
    assert prompts[verse] == 256
    # MathVerse score_answer_s2: the question, the gold answer and the extraction, less
    # the "Extracted Answer: " the judge repeated
    tail = "[Question]: Choices: A:1 B:2\n[Standard Answer]: B\n[Model_answer] : B\nJudgement:"
    assert sum(p.endswith(tail) and p.startswith("Below are two answers") for p in prompts) == 1
    preds = [json.loads(x) for x in (tmp_path / "judged" / "predictions.jsonl").read_text().splitlines()]
    extracted = {p["id"]: p["extractions"] for p in preds if p["benchmark"] == "mathvista_testmini"}
    assert extracted == {"1": ["B"], "2": ["1.2"], "3": ["1000"]}
    assert all("extractions" not in p for p in preds if p["benchmark"] == "mmstar")

    again = evaluate(model, data_root, tmp_path / "judged", *judge)  # cached: nothing is sent
    assert len(server.requests) == 7 and again == judged


def test_a_refusing_judge_fails_only_the_judged_benchmarks(tmp_path, data_root, tiny_model_dirs,
                                                          capsys):
    bad = Server(status=400)
    try:
        args = ["--model", tiny_model_dirs["qwen2_5_vl"], "--data-root", str(data_root),
                "--benchmarks", *NAMES, "--out", str(tmp_path), "--no-mlflow", "--no-progress",
                "--judge", bad.url, "--judge-model", "m"]
        assert main(args, engine=Scripted()) == 1
    finally:
        bad.httpd.shutdown()
    failures = json.loads((tmp_path / "failures.json").read_text())
    assert sorted(failures) == ["mathverse_testmini", "mathvista_testmini"]
    assert "HTTP 400 after 1 attempt(s)" in failures["mathvista_testmini"]
    with open(tmp_path / "results.csv") as fh:
        done = {r["benchmark"]: r["extraction"] for r in csv.DictReader(fh) if r["category"] == "all"}
    assert done == {"mmstar": "rules"}
    assert "2 benchmark(s) failed" in capsys.readouterr().err


def test_judge_options_are_checked_before_anything_loads(tmp_path, capsys):
    assert main(["--model", "nowhere", "--benchmark", "pope=/x", "--out", str(tmp_path),
                 "--judge", "http://localhost:1/v1"]) == 1
    assert capsys.readouterr().err.strip() == (
        "visgrpo eval: error: --judge needs --judge-model (the model name the endpoint serves)")


def test_transient_errors_are_retried_and_replies_survive_a_restart(tmp_path):
    flaky = Server(fail_first=2)  # two 503s, then answers
    try:
        cache = tmp_path / "judge" / "cache.jsonl"
        judge = Judge(JudgeConfig(flaky.url, "m", max_retries=3), cache)
        assert judge.ask("Model response: 'one point two'", 16) == "1.2"
        assert len(flaky.requests) == 3 and judge.requests == 3
        with open(cache, "ab") as fh:
            fh.write(b'{"key": "torn')  # a kill in the middle of caching another reply
        reread = Judge(JudgeConfig(flaky.url, "m", max_retries=3), cache)
        assert reread.ask("Model response: 'one point two'", 16) == "1.2"
        assert len(flaky.requests) == 3  # from the cache
        other_model = Judge(JudgeConfig(flaky.url, "n", max_retries=3), cache)
        assert other_model.ask("Model response: 'one point two'", 16) == "1.2"
        assert len(flaky.requests) == 4  # the cache is per judge model
    finally:
        flaky.httpd.shutdown()
