r"""TAGI (Liao et al., NeurIPS 2024): a hypernetwork reads a task's instruction and writes its LoRA.

  python -m launch.run --config=configs/tagi.py --workdir=/tmp/tagi
  python -m launch.run --config=configs/tagi.py:smoke --workdir=/tmp/tagi-smoke

Per-task teacher LoRAs trained on each seen task's instances, then the hypernetwork's two
stages (pretraining on text cut into (a, b, c); finetuning on the seen tasks with CE + λ1·KL +
λ2·MSE to the task's LoRA), then exact match and ROUGE-L on seen and unseen tasks' test inputs
for the base, the base with the instruction in its prompt, the hypernetwork after each stage,
and the per-task LoRAs. See rd/methods/tagi/stages.py (training) and rd/methods/tagi/job.py (the job).

Fields beyond `rd.config.base_config()` (whose `lora.*` shapes both the hypernetwork's output
and the per-task LoRAs, and whose `data.template_*` are the suite's prompts):
  tasks.source          "suite" (rd.tasks.task_suite) or a .jsonl of task examples with
                        meta.task and meta.split ("seen" / "unseen").
  tasks.names           comma-separated task names (default: every task, or the first
                        `tasks.seen` / `tasks.unseen` of each split; 0 = all).
  tasks.n_train/n_test  examples per task: the first n_train train, the next n_test test.
  tasks.shots           worked examples in the suite's instruction (the hypernetwork's input
                        and the in-context baseline's prompt).
  hypernet.hidden       the MLP's width; hypernet.instruction_len: instruction tokens read.
  adapters.steps/lr     each per-task LoRA's training (CE on its instances, rd.train).
  stage1.text           pretraining text: a .txt file (paragraphs), a data source, or "" (the
                        seen tasks' instructions and training instances written out as text).
  stage1.segment_words  (a, b, c) word counts: LoRA from a, read b, predict c.
  stage2.teacher        "adapter" (base + the task's LoRA) or "context" (instruction in prompt).
  stage2.kl_weight      λ1; stage2.adapter_weight × sigmoid(MSE) = λ2 (adapter_sigmoid=False:
                        λ2 = adapter_weight); stage2.ce_weight weighs the label term.
  evaluation.*          greedy decoding length, batch, test examples per task (limit; 0 =
                        all), a tighter cap on seen tasks (seen_limit), and whether to score the
                        per-task LoRAs.
  ablations             comma-separated stage-2 variants, each trained and scored as its own
                        system: no_kl (λ1 = 0), no_alignment (λ2 = 0), no_stage1 (stage 2 from
                        the initial hypernetwork).

The table also gives each system's inference FLOPs per unseen test example (its prompt and
answer tokens through `ModelSpec.generation_flops`, plus the LoRA's FLOPs per token and, for the
hypernetwork, reading the instruction once per task) and both relative to the base with the
instruction in its prompt.

Presets: "" (Gemma 3 270M, every suite task), "cpu" (the same tasks with short training and
every ablation, about 2.5 hours on 2 CPU cores), "smoke" (Gemma 3 270M, 3 seen and 2 unseen
tasks, a few steps: shows the stages run end to end, not the method's quality), "tiny" (tests).
"""

from rd.config import base_config

# The task suite's prompts (rd.tasks.task_suite.TEACHER_TEMPLATE / STUDENT_TEMPLATE).
TEACHER_TEMPLATE = "{context}\n\nInput: {query}\nOutput:"
STUDENT_TEMPLATE = "Input: {query}\nOutput:"


def get_config(arg: str = ""):
  c = base_config()
  c.job = "rd.methods.tagi.job"
  c.data.update(template_teacher=TEACHER_TEMPLATE, template_student=STUDENT_TEMPLATE,
                teacher_len=192, student_len=48, response_len=16, global_batch=8,
                eval_examples=32)
  c.lora.update(rank=8, alpha=16.0, targets=("q", "k", "v", "o"))
  c.loss.update(temperature=1.0, chunk_size=256)
  c.optim.update(lr=1e-3, warmup_steps=10)
  c.train.update(log_every=10, checkpoint_every=100)
  # n_train: the suite's smallest seen task (comparative) has 58 distinct inputs in all.
  c.tasks = dict(source="suite", names="", seen=0, unseen=0, n_train=40, n_test=16, shots=2,
                 seed=0)
  c.hypernet = dict(hidden=256, instruction_len=128)
  c.adapters = dict(steps=100, lr=2e-3)
  c.stage1 = dict(steps=500, lr=1e-3, text="", segment_words=(32, 16, 8))
  # The MSE is a mean over every A and B entry (~7e5 of them on Gemma 3 270M at rank 8) and
  # starts near 2e-5, so at weight 1 its gradient is ~1e6 times smaller than CE's and the term
  # does nothing; 1e5 makes λ2·MSE about 1 at the start, the size of CE and KL.
  c.stage2 = dict(steps=1000, lr=1e-3, teacher="adapter", ce_weight=1.0, kl_weight=1.0,
                  adapter_weight=1e5, adapter_sigmoid=True)
  c.evaluation = dict(max_new_tokens=8, batch_size=16, limit=0, seen_limit=0,
                      per_task_adapters=True)
  c.ablations = ""
  if arg == "cpu":  # every suite task and every ablation, about 2.5 hours on 2 CPU cores
    c.data.update(eval_examples=16)
    c.optim.update(warmup_steps=4)
    c.adapters.update(steps=16, lr=3e-3)
    c.stage1.update(steps=150)
    c.stage2.update(steps=150)
    c.evaluation.update(seen_limit=4)
    c.ablations = "no_kl,no_alignment,no_stage1"
  elif arg == "smoke":
    c.tasks.update(seen=3, unseen=2, n_train=16, n_test=4)
    c.data.update(global_batch=4, eval_examples=8)
    c.adapters.update(steps=8)
    c.stage1.update(steps=6, segment_words=(24, 12, 6))
    c.stage2.update(steps=8)
    c.optim.update(warmup_steps=2)
    c.train.update(log_every=2, checkpoint_every=4)
    c.evaluation.update(max_new_tokens=6, batch_size=4)
  elif arg == "tiny":
    c.data.update(teacher_len=64, student_len=32, response_len=8, global_batch=4,
                  eval_examples=4)
    c.lora.update(rank=4, alpha=8.0, targets=("q", "v"))  # half the programs to compile
    c.hypernet.update(hidden=32, instruction_len=32)
    c.tasks.update(n_train=8, n_test=4, shots=0)
    c.adapters.update(steps=4)
    c.stage1.update(steps=4, segment_words=(6, 4, 3))
    c.stage2.update(steps=4, adapter_weight=1e3)  # its LoRAs are tiny: the MSE is larger
    c.optim.update(warmup_steps=1)
    c.train.update(log_every=2, checkpoint_every=2)
    c.evaluation.update(max_new_tokens=4, batch_size=4)
  elif arg:
    raise ValueError(f"unknown preset {arg!r}; use '', 'cpu', 'smoke' or 'tiny'")
  return c
