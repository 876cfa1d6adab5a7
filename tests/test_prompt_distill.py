"""Prompt distillation: question parsing and filtering, question generation, the whole job."""

import json
import os
import subprocess
import sys

import pytest

from configs.prompt_distill import get_config
from rd import job as job_lib
from rd.methods.prompt_distill import job as prompt_distill
from rd.config import ConfigError
from rd.tasks import facts
from rd.data.examples import Example, read_jsonl, write_jsonl
from rd.generate import generate_text
from tests.fixtures import make_facts, make_model_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = ("Born in 1969, Uleth Neskessa grew up by the sea. She works as a stonemason. "
       "Uleth Neskessa owns a parrot named Lumix.")


def test_parse_keeps_complete_pairs_and_stops_at_a_new_text():
  cont = (" In which year was Uleth Neskessa born?\nAnswer: 1969\n"
          "Question:What does Uleth Neskessa do for a living? \nAnswer:  stonemason\n"
          "Question: What is the name of Uleth Neskessa's")
  assert prompt_distill.parse_qa_pairs(cont) == [
      ("In which year was Uleth Neskessa born?", "1969"),
      ("What does Uleth Neskessa do for a living?", "stonemason")]
  cont = " Who is Uleth?\nAnswer: a parrot\n\nText: Mo was born.\nQuestion: Who?\nAnswer: Mo\n"
  assert prompt_distill.parse_qa_pairs(cont) == [("Who is Uleth?", "a parrot")]
  cont = " A?\nAnswer: 1969\nText: next\nQuestion: B?\nAnswer: 1\n"
  assert prompt_distill.parse_qa_pairs(cont) == [("A?", "1969")]
  assert prompt_distill.parse_qa_pairs(" What year?\nAnswer: 19") == []  # cut mid-answer
  assert prompt_distill.parse_qa_pairs("") == []


def test_filters_and_deduplication():
  pairs = [("In which year was Uleth Neskessa born?", "1969"),
           ("in which year was Uleth Neskessa born", "1969"),  # not a question (no "?")
           ("In which YEAR was Uleth Neskessa born?", "1969"),  # duplicate after normalizing
           ("What does Uleth Neskessa do?", "baker"),  # not in the document
           ("Was Uleth Neskessa born in 1969?", "1969"),  # answer given away
           ("What is the name of her parrot?", "Lumix"),  # who is "her"?
           ("What is Uleth Neskessa's parrot called?", "Lumix"),
           ("Where did Uleth Neskessa grow up?", "by the sea she works as a"),  # long answer
           ("", "1969"), ("What is Uleth Neskessa's job?", "")]
  kept, why = prompt_distill.select_pairs(pairs, DOC, entity="Uleth Neskessa")
  assert kept == [("In which year was Uleth Neskessa born?", "1969"),
                  ("What is Uleth Neskessa's parrot called?", "Lumix")]
  assert why == {"not_a_question": 1, "duplicate": 1, "answer_not_in_document": 1,
                 "answer_in_question": 1, "entity_not_named": 1, "long_answer": 1, "empty": 2}
  kept, _ = prompt_distill.select_pairs([("What is the name of her parrot?", "Lumix")], DOC)
  assert len(kept) == 1  # no entity given: not required


def test_generate_questions_builds_readable_examples(monkeypatch, tmp_path):
  docs = [Example(DOC, "", "", meta={"doc_id": "d0", "entity": "Uleth Neskessa"}),
          Example("The town of Brelmark lies on the Sevine River.", "", "",
                  meta={"doc_id": "d1", "entity": "Brelmark"})]
  samples = {0: " When was Uleth Neskessa born?\nAnswer: 1969\nQuestion: Who?\nAnswer: x\n",
             1: " When was Uleth Neskessa born?\nAnswer: 1969\n",  # a duplicate across samples
             2: " On which river does Brelmark lie?\nAnswer: Sevine\n\nText:", 3: " junk"}
  calls = []

  def fake_generate_text(base, lora, tokenizer, prompts, **kwargs):
    calls.append((prompts, kwargs))
    start = sum(len(p) for p, _ in calls[:-1])
    return [samples[start + i] for i in range(len(prompts))]

  monkeypatch.setattr(prompt_distill, "generate_text", fake_generate_text)
  path = str(tmp_path / "pairs.jsonl")
  out = prompt_distill.generate_questions(None, None, docs, per_document=2, temperature=0.7,
                                          seed=3, batch_size=3, path=path)
  assert [(e.query, e.response, e.context) for e in out] == [
      ("When was Uleth Neskessa born?", " 1969\n", DOC),
      ("On which river does Brelmark lie?", " Sevine\n", docs[1].context)]
  assert out[1].meta == {"doc_id": "d1", "entity": "Brelmark", "answer": "Sevine",
                         "source": "generated"}
  assert read_jsonl(path) == out
  shots = prompt_distill.QUESTION_PROMPT.split("{document}")[0]
  assert all(prompt.startswith(shots) for prompts, _ in calls for prompt in prompts)
  assert calls[0][0][0].endswith(DOC + "\nQuestion:")
  assert [k["seed"] for _, k in calls] == [3, 4]  # a new seed per batch
  assert calls[0][1]["sampling"].temperature == 0.7


def test_sample_answers_one_answer_per_temperature_repeats_kept_once(monkeypatch):
  pairs = [Example(DOC, "When was Uleth Neskessa born?", " 1969\n", meta={"answer": "1969"}),
           Example(DOC, "What is her job?", " stonemason\n", meta={"answer": "stonemason"})]
  calls = []
  completions = {0.0: [" 1969\nQuestion: more", " a baker\n"],  # greedy
                 1.0: [" 1969\n", " She is a stonemason.\nQuestion:"]}  # sampled

  def fake_generate_text(base, lora, tokenizer, prompts, **kwargs):
    calls.append((prompts, kwargs))
    return completions[kwargs["sampling"].temperature]

  monkeypatch.setattr(prompt_distill, "generate_text", fake_generate_text)
  out = prompt_distill.sample_answers(None, None, pairs, template=facts.TEACHER_TEMPLATE,
                                      temperatures=(0.0, 1.0), seed=5)
  assert [(e.query, e.response) for e in out] == [
      ("When was Uleth Neskessa born?", " 1969\n"),  # the sample repeats the greedy answer
      ("What is her job?", " a baker\n"),
      ("What is her job?", " She is a stonemason.\n")]
  assert [e.meta for e in out] == [
      {"answer": "1969", "answer_sampled": "1969", "answer_temperature": 0.0},
      {"answer": "stonemason", "answer_sampled": "a baker", "answer_temperature": 0.0},
      {"answer": "stonemason", "answer_sampled": "She is a stonemason.",
       "answer_temperature": 1.0}]
  prompts, _ = calls[0]
  assert prompts[1] == facts.TEACHER_TEMPLATE.format(context=DOC, query="What is her job?")
  assert [k["seed"] for _, k in calls] == [5, 6]  # a new seed per temperature


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp("prompt_distill")
  paths = make_facts(str(d))
  return {"model": make_model_dir(str(d / "model"), sharpness=8.0), **paths}


def _tiny_config(files):
  c = get_config("tiny")
  c.model.path = files["model"]
  c.data.train, c.data.eval = files["train"], files["test"]
  c.evaluation.documents = files["documents"]
  return c


def test_the_whole_job_on_a_tiny_model(files, tmp_path, capsys, monkeypatch):
  """Questions are sampled from the tiny model for real; since a random model writes no usable
  pair, its samples are then swapped for the dataset's own training pairs, written as the
  continuations a good model would sample."""
  given = read_jsonl(files["train"])
  sampled = []

  def sample_then_swap(base, lora, tokenizer, prompts, **kwargs):
    sampled.extend(generate_text(base, lora, tokenizer, prompts, **kwargs))
    # the prompt ends with "Question:"; later pairs start with their own
    return ["Question:".join(f" {e.query}\nAnswer:{e.response}" for e in given
                             if e.context in p) for p in prompts]

  monkeypatch.setattr(prompt_distill, "generate_text", sample_then_swap)
  c = _tiny_config(files)
  c.questions.source = "generated"
  workdir = str(tmp_path / "wd")
  results = job_lib.run(prompt_distill, c, workdir)
  table = capsys.readouterr().out
  assert len(sampled) == 3 and all(isinstance(t, str) for t in sampled)  # 1 per document
  pairs = read_jsonl(os.path.join(workdir, "train_pairs.jsonl"))
  assert [(e.query, e.response) for e in pairs] == [(e.query, e.response) for e in given]
  assert all(e.meta["source"] == "generated" for e in pairs)
  for name in prompt_distill.SYSTEMS:
    assert name in table
    r = results["systems"][name]
    assert r["n"] == 6 and 0 <= r["exact_match"] <= r["contains"] <= 1
  assert results["systems"]["student before"]["drift_kl"] == pytest.approx(0.0, abs=1e-6)
  assert results["systems"]["student after"]["drift_kl"] > 0
  assert results["systems"]["SFT"]["drift_kl"] > 0
  losses = results["train_losses"]
  # 4 steps: too few to promise a lower held-out KL (test_distill covers convergence); the
  # SFT loss starts high enough (~log V) to fall in any case.
  assert 0 < losses["distill"]["after"]["kl"] < 10 * losses["distill"]["before"]["kl"]
  assert losses["sft"]["after"]["ce"] < losses["sft"]["before"]["ce"]
  assert results["rag_top1_document_accuracy"] == 1.0
  assert os.path.getsize(os.path.join(workdir, "results.png")) > 1000
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["systems"].keys() == results["systems"].keys()
  with open(os.path.join(workdir, "predictions.jsonl")) as f:
    assert len(f.readlines()) == 5 * 6
  for sub in ("distill", "sft"):
    assert os.path.exists(os.path.join(workdir, sub, "lora", "adapter.safetensors"))


def test_bad_config_fails_fast(files):
  c = _tiny_config(files)
  c.questions.source = "sampled"
  with pytest.raises(ConfigError, match="questions.source"):
    prompt_distill.validate(c)
  c = _tiny_config(files)
  c.questions.answers = "teacher"
  with pytest.raises(ConfigError, match="questions.answers"):
    prompt_distill.validate(c)
  c = _tiny_config(files)
  c.loss.teacher_temperature = -0.5
  with pytest.raises(ConfigError, match="loss.teacher_temperature"):
    prompt_distill.validate(c)
  proc = subprocess.run([sys.executable, "-m", "launch.run",
                         "--config=configs/prompt_distill.py:tiny", "--workdir=/tmp/never",
                         f"--config.model.path={files['model']}",
                         "--config.evaluation.rag_k=0"],
                        cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert proc.returncode != 0 and "config.evaluation.rag_k" in proc.stderr, proc.stderr
  assert "Traceback" not in proc.stderr
