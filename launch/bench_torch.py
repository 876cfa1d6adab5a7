"""The PyTorch peers of `launch/bench.py`: what a user would write with transformers and PEFT.

Needs the test extra (`pip install -e '.[test]'`: torch, peft). The model runs where rd's does
(the CPU, or the GPU when JAX has one) in the same dtype; nothing is downloaded (the model is read
from the same local files).
"""

from __future__ import annotations

import os

import numpy as np


def load_model(path: str, dtype: str = "float32", device: str = "cpu"):
  """transformers' model for an HF directory or a .gguf file (which transformers dequantizes)."""
  os.environ["HF_HUB_OFFLINE"] = "1"
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel

  path, dtype = str(path), getattr(torch, dtype)
  if path.endswith(".gguf"):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=dtype)
  else:
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
  return model.to(device).eval()


def generate_fn(model, prompts: np.ndarray, new_tokens: int):
  """Greedy `generate` of exactly `new_tokens` tokens for a [B, T] batch of prompts."""
  import torch  # pylint: disable=import-outside-toplevel

  ids = torch.tensor(prompts)
  mask = torch.ones_like(ids)

  def run():
    with torch.no_grad():
      return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                            min_new_tokens=new_tokens, do_sample=False)
  return run


def distill_step_fn(model, batch: dict[str, np.ndarray], *, rank: int, alpha: float,
                    targets: tuple[str, ...], lr: float, temperature: float = 1.0):
  """One prompt-distillation step as the PyTorch loop writes it: the base model with the
  context (adapter disabled, no grad) is the teacher, the LoRA model without it the student;
  forward KL on the response rows only, whose logits alone are made (`logits_to_keep`); AdamW.

  `batch` holds rd's bench batch (right-aligned responses: the last R + 1 positions of both
  sequences hold the rows and the final response token).
  """
  import peft  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel

  student_model = peft.get_peft_model(model, peft.LoraConfig(
      r=rank, lora_alpha=alpha, lora_dropout=0.0,
      target_modules=[f"{t}_proj" for t in targets]))
  params = [p for p in student_model.parameters() if p.requires_grad]
  optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
  device = model.device
  teacher_ids = torch.tensor(batch["teacher_tokens"], device=device)
  student_ids = torch.tensor(batch["student_tokens"], device=device)
  rows = batch["row_mask"].shape[1]
  mask = torch.tensor(batch["row_mask"], dtype=torch.float32, device=device)

  def response_logits(ids):  # logits at the R rows that predict the response tokens
    logits = student_model(input_ids=ids, logits_to_keep=rows + 1).logits[:, :-1]
    return logits.float() / temperature

  def step():
    with torch.no_grad(), student_model.disable_adapter():
      teacher = torch.log_softmax(response_logits(teacher_ids), -1)
    student = torch.log_softmax(response_logits(student_ids), -1)
    kl = (teacher.exp() * (teacher - student)).sum(-1)
    loss = temperature**2 * (kl * mask).sum() / mask.sum()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()  # waits for the step
  return step
