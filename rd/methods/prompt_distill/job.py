"""Prompt distillation (Kujanpää et al.): knowledge from documents into a LoRA, and baselines.

The teacher is the base model with a document in its prompt ("{document}\\n\\nQuestion: ...
\\nAnswer:"); the student is the same base without the document, plus a LoRA. Distilling the
teacher's answer distributions (KL at temperature T) on question-answer pairs about the
documents puts the documents' facts into the LoRA. `run` is the whole experiment, top to bottom:

  1. data: training pairs (the dataset's own, or sampled from the teacher: `generate_questions`),
     held-out paraphrased questions, the documents;
  2. prompt distillation: `rd.train.train` with the KL loss        -> <workdir>/distill/
  3. SFT baseline on the same pairs: `rd.train.train` with CE only -> <workdir>/sft/
  4. evaluation on the held-out questions: student before (base + untrained LoRA, i.e. the
     base; no document), student after
     (base + distilled LoRA), teacher (base + the question's document), RAG (base + BM25 top-k
     documents), SFT (base + SFT LoRA); drift KL of each LoRA on unrelated text;
  5. a table in the terminal, `<workdir>/results.json`, `<workdir>/results.png`,
     `<workdir>/predictions.jsonl`.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from rd import config as config_lib
from rd import evaluate, retrieval
from rd import lora as lora_lib
from rd.data import sources
from rd import scoring
from rd.tasks import facts
from rd.data.examples import Example, read_jsonl, write_jsonl
from rd.data.templates import prompt_fn
from rd.generate import Sampling, generate_text
from rd.metrics import format_table

SYSTEMS = ("student before", "student after", "teacher", "RAG", "SFT")

# ----------------------------------------------------------------------------------------------
# Question generation: sample "Question: ... / Answer: ..." pairs from the teacher.

# Few-shot prompt for a small *base* model: invented texts in the dataset's style (none of
# these names occur in it), each followed by questions whose answers are copied from the text.
QUESTION_PROMPT = """\
Text: Morwen Hale was born in 1962. She works as a potter in the town of Elmsby. Her cat is called Pip.
Question: In which year was Morwen Hale born?
Answer: 1962
Question: What does Morwen Hale do for a living?
Answer: potter
Question: What is the name of Morwen Hale's cat?
Answer: Pip

Text: The town of Cardel lies on the Brisk River. It is famous for its cheese. The mayor of Cardel is Anna Lowe.
Question: On which river does Cardel lie?
Answer: Brisk
Question: What is Cardel famous for?
Answer: cheese
Question: Who is the mayor of Cardel?
Answer: Anna Lowe

Text: {document}
Question:"""

_PAIR = re.compile(r"Question:(.*)\nAnswer:(.*)\n")


def parse_qa_pairs(continuation: str) -> list[tuple[str, str]]:
  """(question, answer) pairs of a continuation of `QUESTION_PROMPT` (which ends in
  "Question:"). Stops at the first blank line or "Text:" (the model starting a new example);
  a pair counts only if its answer line is complete (ends with a newline)."""
  text = "Question:" + continuation
  for stop in ("\n\n", "\nText:"):
    cut = text.find(stop)
    if cut >= 0:
      text = text[:cut + 1]
  return [(q.strip(), a.strip()) for q, a in _PAIR.findall(text)]


@dataclasses.dataclass(frozen=True)
class PairFilter:
  max_answer_words: int = 4
  max_answer_chars: int = 40
  max_question_words: int = 30


def reject_reason(question: str, answer: str, document: str, entity: str | None = None,
                  limits: PairFilter = PairFilter()) -> str | None:
  """Why a generated pair is unusable, or None if it is kept."""
  if not question or not answer:
    return "empty"
  if not question.endswith("?"):
    return "not_a_question"
  if len(question.split()) > limits.max_question_words:
    return "long_question"
  if len(answer.split()) > limits.max_answer_words or len(answer) > limits.max_answer_chars:
    return "long_answer"
  if not scoring.contains_answer(document, answer):
    return "answer_not_in_document"
  if scoring.contains_answer(question, answer):
    return "answer_in_question"
  if entity and entity.lower() not in question.lower():
    return "entity_not_named"  # without the document, the student could not tell who is meant
  return None


def select_pairs(pairs: Sequence[tuple[str, str]], document: str, entity: str | None = None,
                 limits: PairFilter = PairFilter()
                 ) -> tuple[list[tuple[str, str]], collections.Counter]:
  """Filters and de-duplicates (by normalized question) one document's pairs, keeping the
  first occurrence; returns the kept pairs and a count of reject reasons."""
  kept, seen, rejected = [], set(), collections.Counter()
  for question, answer in pairs:
    reason = reject_reason(question, answer, document, entity, limits)
    key = scoring.normalize_answer(question)
    if reason is None and key in seen:
      reason = "duplicate"
    if reason:
      rejected[reason] += 1
      continue
    seen.add(key)
    kept.append((question, answer))
  return kept, rejected


def generate_questions(base, tokenizer, documents: Sequence[Example], *, per_document: int,
                       temperature: float, seed: int, top_p: float = 1.0,
                       max_new_tokens: int = 64, batch_size: int = 8,
                       path: str | None = None) -> list[Example]:
  """Samples question-answer pairs about each document from the teacher (the base with the
  document in `QUESTION_PROMPT`): `per_document` continuations per document, each parsed into
  pairs (`parse_qa_pairs`), filtered and de-duplicated per document (`select_pairs`).

  `documents` are `Example`s whose `context` is the document text (the dataset's `documents`
  split; `meta["entity"]`, if present, must be named by every kept question). Returns QA
  `Example`s (context = document, response = " answer\\n") and writes them to `path` (JSONL).
  """
  prompts = [QUESTION_PROMPT.format(document=d.context) for d in documents
             for _ in range(per_document)]
  completions = []
  sampling = Sampling(temperature=temperature, top_p=top_p)
  for i, start in enumerate(range(0, len(prompts), batch_size)):
    chunk = prompts[start:start + batch_size]
    completions += generate_text(base, None, tokenizer, chunk, max_new_tokens=max_new_tokens,
                                 batch_size=batch_size, sampling=sampling, seed=seed + i)
  examples, rejected, raw = [], collections.Counter(), 0
  for d, doc in enumerate(documents):
    pairs = [p for c in completions[d * per_document:(d + 1) * per_document]
             for p in parse_qa_pairs(c)]
    raw += len(pairs)
    kept, why = select_pairs(pairs, doc.context, doc.meta.get("entity"))
    rejected.update(why)
    for question, answer in kept:
      meta = {**{k: doc.meta[k] for k in ("doc_id", "entity", "kind") if k in doc.meta},
              "answer": answer, "source": "generated"}
      examples.append(Example(context=doc.context, query=question,
                              response=facts.RESPONSE_FORMAT.format(answer=answer), meta=meta))
  logging.info("question generation: %d samples, %d parsed pairs, %d kept, rejected %s",
               len(prompts), raw, len(examples), dict(rejected))
  if path:
    write_jsonl(path, examples)
  return examples


def sample_answers(base, tokenizer, pairs: Sequence[Example], *, template: str,
                   temperatures: Sequence[float], seed: int, max_new_tokens: int = 16,
                   batch_size: int = 8) -> list[Example]:
  """The pairs with their answers replaced by the teacher's: per question, one answer per
  temperature in `temperatures` (0 = greedy), sampled from the base with the document in its
  prompt (`template`), cut at its first line; a question's repeated answers are kept once.

  This is the paper's data: the training answers come from the teacher, mistakes included, so
  SFT learns from single samples while distillation sees the teacher's whole distribution along
  each answer. The gold answer stays in `meta["answer"]`; `meta["answer_sampled"]` is the new
  one, `meta["answer_temperature"]` the temperature it was drawn at.
  """
  prompts = [template.format(context=p.context, query=p.query) for p in pairs]
  answers = [{} for _ in pairs]  # per pair: answer -> the temperature it first came at
  for i, temperature in enumerate(temperatures):
    completions = generate_text(base, None, tokenizer, prompts, max_new_tokens=max_new_tokens,
                                batch_size=batch_size, seed=seed + i,
                                sampling=Sampling(temperature=temperature))
    for found, completion in zip(answers, completions):
      found.setdefault(scoring.answer_span(completion), temperature)
  out = []
  for pair, found in zip(pairs, answers):
    for answer, temperature in found.items():
      meta = {**pair.meta, "answer": evaluate.gold_answer(pair), "answer_sampled": answer,
              "answer_temperature": temperature}
      out.append(dataclasses.replace(pair, response=facts.RESPONSE_FORMAT.format(answer=answer),
                                     meta=meta))
  right = sum(scoring.exact_match(p.meta["answer_sampled"], p.meta["answer"]) for p in out)
  logging.info("sampled answers: %d pairs from %d questions, %d equal the gold answer",
               len(out), len(pairs), right)
  return out


# ----------------------------------------------------------------------------------------------
# Configuration


def validate(c: ml_collections.ConfigDict) -> None:
  """The engine's checks plus this job's own fields; raises `config.ConfigError`."""
  config_lib.validate(c)

  def check(ok: bool, field: str, message: str) -> None:
    if not ok:
      raise config_lib.ConfigError(f"config.{field}: {message}")

  check(c.questions.source in ("given", "generated"), "questions.source",
        "use 'given' (the dataset's pairs) or 'generated' (sampled from the teacher)")
  check(c.questions.answers in ("given", "sampled"), "questions.answers",
        "use 'given' (the dataset's answers) or 'sampled' (the teacher's)")
  check(len(c.questions.answer_temperatures) >= 1
        and all(t >= 0 for t in c.questions.answer_temperatures),
        "questions.answer_temperatures", "give one or more temperatures >= 0, e.g. (0.0, 1.0)")
  check(c.questions.per_document >= 1, "questions.per_document", "must be >= 1")
  check(c.questions.temperature >= 0, "questions.temperature", "must be >= 0")
  check(bool(c.data.eval), "data.eval", "set the held-out questions to evaluate on")
  problem = sources.check(c.evaluation.documents)
  check(not problem, "evaluation.documents", str(problem))
  check(c.evaluation.rag_k >= 1, "evaluation.rag_k", "must be >= 1")
  check(c.evaluation.limit >= 0, "evaluation.limit", "must be >= 0 (0 = all)")
  check(c.sft.lr >= 0 and c.sft.steps >= 0, "sft", "lr and steps must be >= 0 (0 = as distill)")


def _copy(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(c.to_dict())


def distill_config(c, train_source: str) -> ml_collections.ConfigDict:
  d = _copy(c)
  d.data.train = train_source
  return d


def sft_config(c, train_source: str) -> ml_collections.ConfigDict:
  """The same loop, cross-entropy on the gold answer only (the student never sees a document)."""
  s = distill_config(c, train_source)
  s.loss.update(kl_weight=0.0, ce_weight=1.0, hidden_weight=0.0)
  s.optim.lr = c.sft.lr or c.optim.lr
  s.train.steps = c.sft.steps or c.train.steps
  return s


# ----------------------------------------------------------------------------------------------
# The experiment


def spread(examples: Sequence[Example], limit: int) -> list[Example]:
  """`limit` examples evenly spaced over `examples` (all of them if limit is 0 or larger), so
  a subset still covers every document of a dataset stored document by document."""
  if not limit or limit >= len(examples):
    return list(examples)
  return [examples[i] for i in np.linspace(0, len(examples) - 1, limit).round().astype(int)]


def results_table(results: dict[str, Any]) -> str:
  rows = [[name, f"{100 * r['exact_match']:.1f}", f"{100 * r['contains']:.1f}", str(r["n"]),
           "" if r.get("drift_kl") is None else f"{r['drift_kl']:.4f}"]
          for name, r in results["systems"].items()]
  return format_table(rows, ["system", "exact match %", "contains %", "n", "drift KL"])


def save_plot(results: dict[str, Any], path: str) -> None:
  """Bar plot of exact match and contains accuracy per system, drift KL in the labels."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  systems = results["systems"]
  names = list(systems)
  x = np.arange(len(names))
  fig, ax = plt.subplots(figsize=(8, 4.5))
  for offset, metric, label in ((-0.2, "exact_match", "exact match"), (0.2, "contains",
                                                                         "contains answer")):
    values = [100 * systems[n][metric] for n in names]
    bars = ax.bar(x + offset, values, width=0.4, label=label)
    ax.bar_label(bars, fmt="%.0f", fontsize=8)
  labels = [n if systems[n].get("drift_kl") is None else
            f"{n}\ndrift KL {systems[n]['drift_kl']:.3f}" for n in names]
  ax.set_xticks(x, labels, fontsize=8)
  ax.set_ylim(0, 105)
  ax.set_ylabel("% of held-out questions")
  ax.set_title(f"Prompt distillation: {results['n_test']} held-out questions, "
               f"{results['n_train_pairs']} training pairs")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def training_pairs(job, base, tokenizer, documents) -> list[Example]:
  """The training pairs (generated, or the dataset's with the teacher's answers), made once:
  a rerun reads `train_pairs.jsonl` back, so a resumed training sees the same data."""
  c = job.config
  path = job.path("train_pairs.jsonl")

  def make():
    if c.questions.source == "generated":
      with job.phase("generate questions"):
        pairs = generate_questions(
            base, tokenizer, documents, per_document=c.questions.per_document,
            temperature=c.questions.temperature, top_p=c.questions.top_p,
            seed=c.questions.seed, max_new_tokens=c.questions.max_new_tokens,
            batch_size=c.questions.batch_size)
      if not pairs:
        raise RuntimeError("question generation kept no pair (see the log for reject "
                           "reasons); raise questions.per_document or use "
                           "questions.source=given")
    else:
      pairs = sources.load(c.data.train)
      if c.questions.answers == "sampled":
        with job.phase("sample answers"):
          pairs = sample_answers(base, tokenizer, pairs, template=c.data.template_teacher,
                                 temperatures=c.questions.answer_temperatures,
                                 seed=c.questions.seed, batch_size=c.evaluation.batch_size,
                                 max_new_tokens=c.evaluation.max_new_tokens)
    if job.primary:
      write_jsonl(path, pairs)
    return {"pairs": len(pairs)}

  job.once(job.path("pairs"), make)
  return read_jsonl(path)


def run(job) -> dict[str, Any]:
  """The whole experiment (see the module docstring); returns what `results.json` holds."""
  c = job.config
  base, tokenizer = job.load()
  with job.phase("load data"):
    documents = sources.load(c.evaluation.documents)
    test = spread(sources.load(c.data.eval), c.evaluation.limit)
    evaluate.check_max_new_tokens(c, tokenizer, test)
  pairs = training_pairs(job, base, tokenizer, documents)
  if job.primary:
    write_jsonl(job.path("test.jsonl"), test)

  # 2-3. Prompt distillation, then SFT on the same pairs.
  pairs_path = job.path("train_pairs.jsonl")
  with job.phase("train: prompt distillation"):
    distilled, distill_losses = job.trained_lora(distill_config(c, pairs_path), "distill",
                                                 base=base, tokenizer=tokenizer)
  with job.phase("train: SFT"):
    sft, sft_losses = job.trained_lora(sft_config(c, pairs_path), "sft", base=base,
                                       tokenizer=tokenizer)

  # 4. Evaluation on the held-out questions.
  retriever = retrieval.Retriever([d.context for d in documents])
  k = c.evaluation.rag_k
  student, teacher = prompt_fn(c.data.template_student), prompt_fn(c.data.template_teacher)
  rag = lambda e: retrieval.rag_prompt(retriever, e.query, k, c.data.template_teacher)  # noqa: E731
  # The untrained student is the base plus a LoRA whose B is zero: numerically the base, and
  # it shares its compilations with the two trained LoRAs.
  untrained = job.replicate(
      lora_lib.init(base.spec, config_lib.lora_config(c), jax.random.key(c.train.seed)))
  runs = {"student before": (untrained, student), "student after": (distilled, student),
          "teacher": (None, teacher), "RAG": (None, rag), "SFT": (sft, student)}
  systems, predictions = {}, []
  for name in SYSTEMS:
    lora, template_fn = runs[name]
    with job.phase(f"eval: {name}"):
      r = evaluate.answer_accuracy(base, lora, tokenizer, test, template_fn,
                                   max_new_tokens=c.evaluation.max_new_tokens,
                                   batch_size=c.evaluation.batch_size)
    predictions += [{"system": name, **p} for p in r.pop("predictions")]
    systems[name] = r
  with job.phase("eval: drift KL"):
    for name, lora in (("student before", untrained), ("student after", distilled),
                       ("SFT", sft)):
      systems[name]["drift_kl"] = evaluate.drift_kl(base, lora, tokenizer)
  doc_ids = [d.meta.get("doc_id") for d in documents]
  retrieved = [doc_ids[retriever.top(e.query, 1)[0]] == e.meta.get("doc_id") for e in test]

  # 5. Report.
  teacher_em = systems["teacher"]["exact_match"]
  after_em = systems["student after"]["exact_match"]
  results = {
      "systems": systems,
      "n_test": len(test), "n_train_pairs": len(pairs), "questions": c.questions.source,
      "rag_top1_document_accuracy": float(np.mean(retrieved)) if retrieved else 0.0,
      "train_losses": {"distill": distill_losses, "sft": sft_losses},
      "targets": {
          "student_after_over_teacher": after_em / teacher_em if teacher_em else None,
          "student_after_minus_sft_points": 100 * (after_em - systems["SFT"]["exact_match"]),
      },
  }
  return job.finish(results, tables=[results_table(results)], predictions=predictions,
                    plot=save_plot)
