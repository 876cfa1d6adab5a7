r"""Instruction internalization (Snell et al.) on tasks of rd's generated suite.

  python -m launch.run --config=configs/instruction_distill.py --workdir=/tmp/id
  python -m launch.run --config=configs/instruction_distill.py --workdir=/tmp/id \
      --config.suite.tasks="('antonym','uppercase_word')" --config.train.steps=64

The teacher is the base with a task's instruction and `suite.k` worked examples in its prompt,
the student the base with the input only, plus one LoRA per task. See rd/methods/context_distill/instructions.py.

Fields beyond `rd.config.base_config()`:
  suite.tasks           task names of `rd.tasks.task_suite.TASKS`, one LoRA each.
  suite.k               worked examples in the teacher's prompt.
  suite.n_train/n_test  training inputs and (disjoint) test inputs per task.
  suite.seed            the suite's seed (instances and shots).
  distill.responses     "teacher": distil on the teacher's greedy answers (no labels, the
                        paper's setting); "gold": on the generator's answers.
  sft.lr, sft.steps     the SFT baselines' learning rate and steps (0 = as optim.lr /
                        train.steps).
  evaluation.*          greedy generation: tokens per answer, batch.

`data.train` / `data.eval` are set by the job (its own files under the workdir).
The argument picks a preset: "" (Gemma 3 270M) or "tiny" (smoke tests).
"""

from rd.config import base_config
from rd.tasks import task_suite as ts


def get_config(arg: str = ""):
  c = base_config()
  c.job = "rd.methods.context_distill.instructions"
  # Gemma 3 tokens, BOS included: the default tasks' longest teacher prompt is 52, student 9;
  # a response (the first line of at most 12 generated tokens, " " and "\n") <= 14.
  c.data.update(template_teacher=ts.TEACHER_TEMPLATE, template_student=ts.STUDENT_TEMPLATE,
                teacher_len=72, student_len=24, response_len=16, global_batch=8,
                eval_examples=8)
  c.loss.update(kl_weight=1.0, ce_weight=0.0, temperature=1.0, divergence="forward_kl")
  c.lora.update(rank=8, alpha=16.0, targets=("q", "k", "v", "o", "gate", "up", "down"))
  c.teacher.cache = True  # one teacher pass over the training inputs, reused every epoch
  c.optim.update(lr=2e-3, warmup_steps=2, end_lr_factor=0.1)
  # Sized for CPU: 3 epochs of 32 inputs. The three default tasks took 16 CPU-minutes (46 min
  # wall on 2 cores shared with other jobs); mean exact match: student before 0, teacher 85.4,
  # student after 75.0, SFT on teacher answers 68.8, SFT on gold 91.7 (%).
  c.train.update(steps=12, log_every=4, checkpoint_every=12)
  # Few-shot teacher exact match (launch/task_suite_eval.py, 16 inputs): 62.5 / 100 / 93.8 %.
  c.suite = dict(tasks=("uppercase_word", "ing_form", "positive_or_negative"), k=3,
                 n_train=32, n_test=32, seed=0)
  c.distill = dict(responses="teacher")
  c.sft = dict(lr=0.0, steps=0)
  c.evaluation = dict(max_new_tokens=12, batch_size=16)
  if arg == "tiny":
    c.data.update(teacher_len=256, student_len=96, response_len=32, global_batch=4,
                  eval_examples=4)
    c.lora.update(rank=4, alpha=8.0, targets=("q", "v"))
    c.optim.update(lr=1e-2, warmup_steps=1)
    c.train.update(steps=2, log_every=1, checkpoint_every=2)
    c.suite.update(tasks=("antonym",), n_train=4, n_test=4)
    c.evaluation.update(max_new_tokens=4, batch_size=4)
  elif arg:
    raise ValueError(f"unknown preset {arg!r}; use '' or 'tiny'")
  return c
