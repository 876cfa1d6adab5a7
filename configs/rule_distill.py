r"""Rule distillation (Yang et al.) on rd's own rule tasks, by training size k.

  python -m launch.run --config=configs/rule_distill.py --workdir=/tmp/rule
  python -m launch.run --config=configs/rule_distill.py --workdir=/tmp/rule \
      --config.rule.rules="('add_x',)" --config.rule.ks="(4, 16)" --config.rule.n_test=32

The teacher is the base with a rule (its text and `rule.n_shots` worked examples) in its prompt;
students are the base + LoRA without it. For every rule and k the job trains SFT without the
rule, SFT with the rule in the prompt, rule distillation with KL, with KL + hidden alignment,
and the enhanced variant (teacher = base + the SFT-with-rule LoRA), then scores greedy exact
match on in-distribution and out-of-distribution test inputs. See rd/methods/rule_distill/job.py.

Fields beyond `rd.config.base_config()` (`data.train` / `data.eval` are set per training):
  rule.rules          rules of `rd.tasks.rule_tasks.RULES` to run (when rule.data_dirs is empty).
  rule.data_dirs      your own rules instead: directories in the paper's released layout, one
                      per rule (train_{full,no}_{k}shot.json for every k of rule.ks,
                      test_{full,no}_{id,ood}.json, optional valid_{full,no}_seed*.json), e.g.
                        --config=configs/rule_distill.py:paper \
                        --config.rule.data_dirs="('/data/rules/task1', '/data/rules/task2')"
  rule.ks             training sizes (nested subsets); data.global_batch must be <= the smallest.
  rule.n_test         test inputs per split (ID and OOD); rule.n_shots worked examples in the
                      rule block; rule.seed the data's seed.
  rule.epochs         passes over the k examples per training (train.steps = epochs * k /
                      global_batch, rounded up); rule.max_steps caps it (0 = no cap).
  rule.hidden_weight  beta of the hidden alignment, on the blocks rule.hidden_layers.
  evaluation.*        greedy decoding of the answers (max_new_tokens, batch_size).
  compile_cache       JAX's persistent compilation cache: "auto" ($RD_CACHE_DIR/jax_compile),
                      a directory, or "" (off). The trainings repeat the same programs.

The argument picks a preset: "" (Gemma 3 270M), "paper" (the Alpaca prompts and lengths of the
paper's released files; set rule.data_dirs) or "tiny" (smoke tests; set model.path).
"""

from rd.config import base_config
from rd.tasks import rule_tasks


def get_config(arg: str = ""):
  c = base_config()
  c.job = "rd.methods.rule_distill.job"
  c.data.update(template_teacher=rule_tasks.TEACHER_TEMPLATE,
                template_student=rule_tasks.STUDENT_TEMPLATE,
                # Gemma 3 tokens with BOS, seed 0, every rule of rule_tasks.RULES: the longest
                # teacher sequence (rule block + prompt + answer) is 81 (concat_ba; 57 for
                # swap_words), student 22, answer 7 (newline included).
                teacher_len=96, student_len=32, response_len=8, global_batch=4,
                eval_examples=4)
  c.loss.update(kl_weight=1.0, ce_weight=0.0, temperature=1.0, divergence="forward_kl")
  c.lora.update(rank=8, alpha=16.0, targets=("q", "k", "v", "o", "gate", "up", "down"))
  c.teacher.cache = True  # the teacher runs once per training; every epoch reuses its rows
  c.optim.update(lr=1e-3, warmup_steps=2, end_lr_factor=0.1)
  c.train.update(log_every=10, checkpoint_every=40)
  c.rule = dict(rules=rule_tasks.DEFAULT_RULES, ks=(4, 8, 16, 32), n_test=64, n_shots=3,
                seed=0, epochs=20.0, max_steps=0, hidden_weight=1.0, hidden_layers=(8, 17),
                data_dirs=())
  c.evaluation = dict(max_new_tokens=8, batch_size=16)
  c.compile_cache = "auto"  # JAX's persistent compilation cache (rd/methods/rule_distill/job.py)
  if arg == "tiny":
    c.data.update(teacher_len=128, student_len=64, response_len=24, global_batch=2,
                  eval_examples=2)
    c.lora.update(rank=4, alpha=8.0)
    c.optim.update(lr=1e-2, warmup_steps=1)
    # Two steps for every k (tests add a k): the same programs, so compile_cache hits.
    c.rule.update(rules=("add_x",), ks=(2,), n_test=2, n_shots=2, epochs=2.0, max_steps=2,
                  hidden_layers=(1, 2))
    c.evaluation.update(max_new_tokens=12, batch_size=4)
  elif arg == "paper":
    # The paper's released data (set rule.data_dirs): Alpaca prompts, whose rule blocks run to
    # 150-200 tokens; the job measures every file and names the length to raise if one is short.
    c.data.update(template_teacher=rule_tasks.ALPACA_TEACHER_TEMPLATE,
                  template_student=rule_tasks.ALPACA_STUDENT_TEMPLATE, teacher_len=320,
                  student_len=128, response_len=32)
    c.evaluation.update(max_new_tokens=32)
  elif arg:
    raise ValueError(f"unknown preset {arg!r}; use '', 'tiny' or 'paper'")
  return c
