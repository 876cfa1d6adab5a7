r"""Composed distillation (Snell et al.): n in-context examples, k of which fit the window.

  python -m launch.run --config=configs/composed_distill.py --workdir=/tmp/cd
  python -m launch.run --config=configs/composed_distill.py --workdir=/tmp/cd \
      --config.composed.forms="('recursive',)" --config.composed.epochs=8

The task is `rd.tasks.composed_tasks` (agents' codenames, one example per agent, questions that
name the agent by nationality); the window is `data.teacher_len` tokens. The job compares
in-window prompting (zero-shot, k random examples, k BM25-retrieved, BM25's top one), the three
composed forms (simultaneous, sequential, recursive) and the oracles (the relevant example alone
or in its chunk) on held-out questions. See rd/methods/composed/job.py.

Fields beyond `rd.config.base_config()`:
  task.*               `rd.tasks.composed_tasks.TaskConfig`: num_items (n), questions per item
                       (train_lexical, train_per_item, heldout_per_item), seed.
  composed.forms       which forms to train.
  composed.chunk       examples per chunk (0 = k, as many as fit); R = ceil(n / chunk) rounds.
  composed.ensemble    simultaneous teacher contexts: "partition" (each question gets a fresh
                       random partition of the n examples into R chunks: K = R) or "random"
                       (composed.contexts independent random chunks).
  composed.contexts    K for "random"; for "partition", 0 = all R chunks.
  composed.epochs      passes over each training's questions (train.steps is set from it).
  composed.min_ratio   refuse to run unless n >= min_ratio x k.
  composed.seed        chunks, ensembles and the random baseline.
  evaluation.*         greedy generation: tokens per answer, batch.

`data.train` / `data.eval` are set by the job (its own files under the workdir).
The argument picks a preset: "" (Gemma 3 270M) or "tiny" (smoke tests).
"""

from rd.config import base_config
from rd.tasks import composed_tasks as tasks


def get_config(arg: str = ""):
  c = base_config()
  c.job = "rd.methods.composed.job"
  # Gemma 3 tokens: an example is 17, the longest question 13, an answer 2 (codename, newline);
  # the 128-token window holds k = 5 examples, so n = 20 is 4 windows; in chunks of 2 (below),
  # 10 rounds. Simultaneous alone took 36 minutes on 2 shared CPU cores (2 s a step of 2).
  c.data.update(template_teacher=tasks.TEACHER_TEMPLATE, template_student=tasks.STUDENT_TEMPLATE,
                teacher_len=128, student_len=24, response_len=4, global_batch=2,
                eval_examples=2)
  # The teacher's side sharpened to T = 0.25 (its ensemble's mixture as one distribution): the
  # averaged distribution is flat where one context of K knows the answer. With chunks of 2
  # (10 rounds; the teacher holding one chunk answers 55% of held-out questions, of 5: 22.5%)
  # simultaneous distillation reached 22.5% held-out exact match against 5% for the best
  # in-window prompting (chunks of 5 at T = 1: 10% against 5%).
  c.loss.update(kl_weight=1.0, ce_weight=0.0, temperature=1.0, teacher_temperature=0.25,
                divergence="forward_kl")
  c.lora.update(rank=16, alpha=32.0, targets=("q", "k", "v", "o", "gate", "up", "down"))
  c.teacher.cache = True  # one teacher pass per training, reused every epoch
  # A constant 1e-3 with batches of 2: on one round's 5 items (10 questions, 10 epochs) it
  # learned item-specific answers (6 of 10 held-out right); 3e-3 and 1e-2 collapsed the student
  # onto one codename for every question, as did 3e-3 decaying to 3e-4 over 4 epochs of
  # batches of 4 (every form: 0-4% held-out).
  c.optim.update(lr=1e-3, warmup_steps=1, end_lr_factor=1.0)
  c.train.update(log_every=10)
  c.task = dict(num_items=20, train_lexical=1, train_per_item=1, heldout_per_item=2, seed=0)
  c.composed = dict(forms=("simultaneous", "sequential", "recursive"), chunk=2,
                    ensemble="partition", contexts=0, epochs=8.0, min_ratio=4.0, seed=0)
  c.evaluation = dict(max_new_tokens=2, batch_size=20)
  if arg == "tiny":
    # The tiny byte-level tokenizer spends about one token per character.
    c.data.update(teacher_len=256, student_len=96, response_len=16, global_batch=4,
                  eval_examples=4)
    c.lora.update(rank=4, alpha=8.0, targets=("q", "v"))
    c.loss.update(teacher_temperature=0.0)
    c.optim.update(lr=1e-2, warmup_steps=1)
    c.train.update(log_every=1)
    c.task.update(num_items=8, train_lexical=1, train_per_item=0, heldout_per_item=1)
    c.composed.update(epochs=1.0, min_ratio=2.0, chunk=0)
    c.evaluation.update(max_new_tokens=4, batch_size=4)
  elif arg:
    raise ValueError(f"unknown preset {arg!r}; use '' or 'tiny'")
  return c
