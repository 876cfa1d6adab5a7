r"""Prompt distillation (knowledge injection, Kujanpää et al.) on the bundled facts dataset.

  python -m launch.run --config=configs/prompt_distill.py --workdir=/tmp/pd
  python -m launch.run --config=configs/prompt_distill.py --workdir=/tmp/pd \
      --config.questions.source=generated --config.train.steps=200

A teacher (the base with a document in its prompt) is distilled into a LoRA student (the base
without it) on question-answer pairs about the documents, at temperature `loss.temperature`.
The job also trains an SFT baseline on the same pairs (`sft.*`) and compares, on held-out
paraphrased questions (`data.eval`): the student before and after, the teacher, RAG (BM25 top
`evaluation.rag_k` documents in the prompt) and SFT. See rd/methods/prompt_distill/job.py.

Fields beyond `rd.config.base_config()`:
  questions.source      "given": the dataset's training pairs (`data.train`); "generated":
                        sample pairs from the teacher (base + document, few-shot prompt).
  questions.answers     (given questions only) "given": train on the dataset's answers;
                        "sampled": replace them by the teacher's, one per temperature in
                        `answer_temperatures` (0 = greedy; a question's repeated answers are
                        kept once). The paper's data: answers come from the teacher, mistakes
                        included (see the measurements in issue 4's notes).
  questions.*           sampling settings of "generated" (per_document = continuations
                        sampled per document, each may hold several pairs).
  sft.lr, sft.steps     the SFT baseline's learning rate and steps (0 = same as optim.lr /
                        train.steps).
  evaluation.documents  the documents (RAG index, question generation).
  evaluation.limit      evaluate on N held-out questions, evenly spaced (0 = all).

The argument picks a preset: "" (Gemma 3 270M, rd_facts/small) or "tiny" (smoke tests).
"""

from rd.config import base_config
from rd.tasks import facts


def get_config(arg: str = ""):
  c = base_config()
  c.job = "rd.methods.prompt_distill.job"
  c.data.update(train="tfds:rd_facts/small:train", eval="tfds:rd_facts/small:test",
                template_teacher=facts.TEACHER_TEMPLATE, template_student=facts.STUDENT_TEMPLATE,
                # rd_facts/small in Gemma 3 tokens, BOS included: the longest teacher
                # sequence (prompt with facts.FORMAT_SHOT + answer) is ~124, student ~44.
                teacher_len=128, student_len=48, response_len=10, global_batch=8,
                eval_examples=8)
  # T = 1, not the paper's 2: on 8 rd_facts documents with gold answers, T = 2 reached 23% held-out
  # exact match after 6 epochs, T = 1 43% (issue 4's note). The teacher's side at T = 0.25
  # sharpens the targets: the student learns the teacher's peak (" Orvax") rather than its
  # spread over openings like " The province of", which it would then prefer on held-out
  # paraphrases. On the default job's 697 pairs, 480 steps (held-out exact match / contains):
  # both sides at T = 1 55.5 / 67.2%, both at 0.5 54.7 / 72.7%, the teacher's alone at 0.5
  # 57.0 / 75.0%, at 0.25 58.6 / 81.3%. With facts.FORMAT_SHOT in both prompts (595 pairs):
  # student 85.2 / 88.3%, teacher 85.9 / 87.5%, SFT 71.9 / 77.3% (issue 4's notes).
  c.loss.update(kl_weight=1.0, ce_weight=0.0, temperature=1.0, teacher_temperature=0.25,
                divergence="forward_kl")
  c.lora.update(rank=16, alpha=32.0, targets=("q", "k", "v", "o", "gate", "up", "down"))
  c.teacher.cache = True  # one teacher pass over the pairs; every epoch after reuses its rows
  # Held-out exact match of the student (issue 4's notes): 4 epochs at lr 2e-3 (warm-up 5) 33%,
  # at 1e-3 (warm-up 16) 39%, at 4e-3 3% (diverged); 8 epochs at 2e-3 52%; 10 at 1e-3 47%.
  # Greedy plus one T = 1 answer per question (710 pairs, `answer_temperatures` below): 480
  # steps at 1e-3 reached 55%, against 47% for one T = 1 answer and 480 steps.
  c.optim.update(lr=1e-3, warmup_steps=16, end_lr_factor=0.1)
  c.train.update(steps=480, log_every=16, checkpoint_every=48)  # ~5 epochs of ~710 pairs
  c.questions = dict(source="given", answers="sampled", answer_temperatures=(0.0, 1.0),
                     per_document=4, temperature=0.8, top_p=0.95, seed=0, max_new_tokens=64,
                     batch_size=8)
  c.sft = dict(lr=0.0, steps=0)
  c.evaluation = dict(documents="tfds:rd_facts/small:documents", rag_k=1, max_new_tokens=8,
                      batch_size=32, limit=128)
  if arg == "tiny":
    c.data.update(teacher_len=320, student_len=128, response_len=32, global_batch=4,
                  eval_examples=8)
    c.lora.update(rank=4, alpha=8.0)
    c.optim.update(lr=1e-2, warmup_steps=2)
    c.train.update(steps=4, log_every=2)
    c.questions.update(per_document=1, max_new_tokens=24, batch_size=4)
    c.evaluation.update(max_new_tokens=12, batch_size=8)
  elif arg:
    raise ValueError(f"unknown preset {arg!r}; use '' or 'tiny'")
  return c
