r"""Scratch-pad internalization on 1-8 digit addition (Snell et al.), at laptop scale.

  python -m launch.run --config=configs/scratchpad_distill.py --workdir=/tmp/sp

A tiny Llama-family model (`model_size`, char-level tokenizer, rd/tasks/addition.py) is trained
from scratch to add with a scratch-pad (`scratchpad.*`), then distilled into a LoRA student
that answers directly (`train.steps`, `optim.lr`, `lora.*`), against a direct-answer model
trained from scratch on the same problems (`direct.*`) and the scratch-pad model fine-tuned on
direct gold answers. See rd/methods/context_distill/scratchpad.py.

Fields beyond `rd.config.base_config()`:
  task.*            problem counts (train: the from-scratch trainings; distill: the unlabeled
                    problems the teacher works out; test: unseen problems), digits, seed;
                    format: how operands are written, "reversed" (zero-padded, least-
                    significant digit first, as answers are: a direct answer is learnable at
                    this size), "padded" or "plain" (far more training; rd/tasks/addition.py).
  model_size.*      hidden, layers, heads of the from-scratch model.
  scratchpad.*      steps and peak learning rate of the scratch-pad model's training.
  direct.*          the same for the direct-answer baseline trained from scratch.
  evaluation.*      generation batch size.

The argument picks a preset: "" (the experiment, sized for a CPU), "gpu" (a bigger model, more
steps and data, for one GPU) or "tiny" (smoke tests).
"""

from rd.config import base_config


def get_config(arg: str = ""):
  c = base_config()
  c.job = "rd.methods.context_distill.scratchpad"
  c.model.path = ""  # set by the job: <workdir>/init, then <workdir>/scratchpad/model
  # Longest sequences in chars, BOS included: problem 18 + scratch-pad 41 + answer 9 + EOS.
  # These are the scratch-pad training's lengths; direct answers get shorter ones (the job).
  c.data.update(template_teacher="{query}{context}", template_student="{query}",
                teacher_len=80, student_len=80, response_len=56, add_eos=True,
                global_batch=32, eval_examples=256)
  c.lora.update(rank=16, alpha=32.0, targets=("q", "k", "v", "o", "gate", "up", "down"))
  c.optim.update(lr=3e-3, warmup_steps=50, end_lr_factor=0.05)
  c.train.update(steps=2000, log_every=50, checkpoint_every=250)  # distillation (LoRA)
  # One epoch each: 6000 x 32 training problems for the scratch-pad model (the direct baseline
  # sees the first 3000 x 32), 2000 x 32 distillation problems. With 3000 steps the teacher
  # was right on 90.7% of the test problems (it miscopies operand digits next to padding).
  c.task = dict(max_digits=8, train_problems=192_000, distill_problems=64_000,
                test_problems=10_000, seed=0, format="reversed")
  c.model_size = dict(hidden=64, layers=3, heads=4)
  c.scratchpad = dict(steps=6000, lr=3e-3)
  c.direct = dict(steps=3000, lr=3e-3)
  c.evaluation = dict(batch_size=500)
  if arg == "tiny":
    # Just enough training for the teacher to finish some scratch-pads (the job needs some).
    c.data.update(global_batch=16, eval_examples=16)
    c.task.update(max_digits=2, train_problems=512, distill_problems=32, test_problems=32)
    c.model_size.update(hidden=32, layers=2, heads=2)
    c.scratchpad.update(steps=80, lr=1e-2)
    c.direct.update(steps=4)
    c.train.update(steps=4, log_every=2)
    c.lora.update(rank=4, alpha=8.0)
    c.evaluation.update(batch_size=16)
  elif arg == "gpu":
    # One GPU: a 6.3M-parameter model (Snell et al. used T5-small), batches of 256, more data.
    # Measured on an H200 (the job stopped after its first training, out of device time): the
    # scratch-pad model's CE fell to 4e-3 by step 500 and 1e-4 by 2000; rd.train ran 11-17
    # steps/s, bound by the host's featurizing (~23 ms a batch of 256 in one process). Eight
    # grain workers featurize instead; the training process then spends ~1.2 ms a batch on
    # input (measured on 2 CPU cores; issue 5's notes).
    c.data.update(global_batch=256, workers=8)
    c.model_size.update(hidden=256, layers=6, heads=8)
    c.task.update(train_problems=256_000, distill_problems=128_000)
    c.scratchpad.update(steps=4000, lr=1e-3)
    c.direct.update(steps=4000, lr=1e-3)
    c.train.update(steps=2000, log_every=250)
    c.optim.update(lr=2e-3, warmup_steps=100)
    c.lora.update(rank=64, alpha=64.0)
    c.evaluation.update(batch_size=2000)
  elif arg:
    raise ValueError(f"unknown preset {arg!r}; use '', 'tiny' or 'gpu'")
  return c
