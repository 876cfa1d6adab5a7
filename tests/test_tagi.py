"""TAGI on a tiny random model: each stage learns, a preempted stage resumes to the same
parameters, the adapter term and its λ2 = sigmoid(MSE), ROUGE-L, config errors; and (slow) the
whole job: per-task LoRAs, both stages, every system scored."""

import json
import math
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.tagi import get_config
from rd import job as job_lib
from rd import config as config_lib
from rd import distill, scoring, sharding
from rd.methods.tagi import hypernet
from rd.methods.tagi import job as tagi_experiment
from rd.methods.tagi import stages as tagi
from rd import lora as lora_lib
from rd.data.examples import Example, write_jsonl
from rd.checkpoint import PreemptionGuard
from rd.lora import Lora
from rd.tokenizer import load_tokenizer
from rd.weights.load import load_model
from tests.fixtures import make_model_dir

# Tiny tasks: each answers every input with its own fixed words, and says which in its
# instruction; the unseen ones use words no seen task answers with.
TASKS = {"cat": ("seen", "the cat sat"), "dog": ("seen", "the lazy dog"),
         "fox": ("seen", "quick brown fox"), "mat": ("unseen", "on the mat")}
INPUTS = ["two plus two", "the rule", "four dogs", "a question", "brown mat", "lazy answer",
          "the quick fox", "sat on two", "rule four", "cat and dog", "the answer", "mat rule"]


def _task_file(path):
  examples = [Example(context=f"Rule: always answer {words}.", query=x, response=f" {words}",
                      meta={"task": name, "split": split, "answer": words})
              for name, (split, words) in TASKS.items() for x in INPUTS]
  write_jsonl(path, examples)
  return path


def _config(files):
  c = get_config("tiny")
  c.model.path, c.tasks.source = files["model"], files["tasks"]
  c.data.response_len = 12  # the tiny tokenizer spends up to 10 tokens on an answer
  c.stage1.text = files["text"]
  c.adapters.update(steps=12, lr=3e-2)
  c.stage1.update(steps=12, lr=1e-2)
  c.stage2.update(steps=16, lr=1e-2)
  c.train.update(log_every=1, checkpoint_every=4)
  return c


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp("tagi")
  with open(d / "text.txt", "w") as f:
    f.write("\n\n".join(" ".join(INPUTS[i:] + INPUTS[:i]) for i in range(6)))
  return {"model": make_model_dir(str(d / "model"), sharpness=4.0),
          "tasks": _task_file(str(d / "tasks.jsonl")), "text": str(d / "text.txt")}


@pytest.fixture(scope="module")
def env(files):
  """The model on its mesh, the tokenizer and the tasks, shared by the stage tests."""
  c = _config(files)
  mesh = sharding.make_mesh(**c.mesh)
  return {"base": sharding.place_params(load_model(files["model"]), mesh), "mesh": mesh,
          "tokenizer": load_tokenizer(files["model"]), "tasks": tagi_experiment.load_tasks(c)}


def _metrics(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def _train(c, stage, workdir, env, **kwargs):
  params = hypernet.init(env["base"].spec, tagi_experiment.hypernet_config(c),
                         jax.random.key(c.train.seed))
  return tagi.train_stage(c, stage, str(workdir), base=env["base"], tokenizer=env["tokenizer"],
                          mesh=env["mesh"], params=params, **kwargs)


class _SigtermAt(PreemptionGuard):
  """The real guard, with a real SIGTERM sent to this process during step `step`."""

  def __init__(self, step):
    super().__init__()
    self.step = step

  def check(self, step):
    if step == self.step:
      os.kill(os.getpid(), signal.SIGTERM)
    return super().check(step)


def test_stage1_learns_and_a_preempted_run_resumes_to_the_same_parameters(files, env, tmp_path,
                                                                           monkeypatch):
  c = _config(files)
  c.train.checkpoint_every = 100  # only the preemption save and the final one
  stage = tagi_experiment.stage1(c, env["tasks"], env["base"], env["tokenizer"])
  stage.steps = 8
  assert stage.template.student == "{query}" and stage.loss.kl_weight == 0
  straight = _train(c, stage, tmp_path / "straight", env)
  assert straight.after["ce"] < straight.before["ce"], (straight.before, straight.after)
  assert os.path.exists(tmp_path / "straight" / "hypernet" / "hypernet.safetensors")

  with _SigtermAt(3) as guard:
    assert _train(c, stage, tmp_path / "resumed", env, guard=guard).stopped_early
  resumed = _train(c, stage, tmp_path / "resumed", env)  # same call: resumes from step 3
  assert not resumed.stopped_early
  for x, y in zip(jax.tree.leaves(straight.params), jax.tree.leaves(resumed.params)):
    np.testing.assert_array_equal(x, y)  # same data order, same updates, bitwise
  steps = [r["step"] for r in _metrics(tmp_path / "resumed" / "metrics.jsonl")
           if "train/loss" in r]
  assert steps == list(range(1, 9))  # nothing repeated, nothing skipped


def _task_stack(env, c, names, seed=0):
  """Stand-ins for trained per-task LoRAs: the hypernetwork's A start, and a random B each."""
  start = hypernet.init(env["base"].spec, tagi_experiment.hypernet_config(c), jax.random.key(0))
  rng = np.random.default_rng(seed)
  weights = {}
  for target, head in start["heads"].items():
    layers, width = head["a_bias"].shape
    a = jnp.broadcast_to(head["a_bias"].reshape(layers, -1, c.lora.rank),
                         (len(names), layers, width // c.lora.rank, c.lora.rank))
    b_shape = (len(names), layers, c.lora.rank, head["b_bias"].shape[1] // c.lora.rank)
    weights[target] = {"a": a, "b": jnp.asarray(rng.normal(size=b_shape) * 0.5, jnp.float32)}
  return Lora(weights, scale=c.lora.alpha / c.lora.rank)


def test_stage2_drives_ce_kl_and_adapter_mse_down_with_lambda2_sigmoid_mse(files, env, tmp_path):
  c = _config(files)
  # The MSE is a mean over the thousands of A and B entries of an example's LoRA, so its
  # gradient per entry is tiny next to CE's and KL's; at weight 1 they alone move the adapter
  # (and its MSE rises). A large weight balances the three on this tiny problem.
  c.stage2.adapter_weight = 1000.0
  seen = env["tasks"].names("seen")
  stage = tagi_experiment.stage2(c, env["tasks"], env["base"], env["tokenizer"], seen)
  stage.steps = 12
  assert stage.tagi.teacher == "adapter" and stage.template.teacher == c.data.template_student
  result = _train(c, stage, tmp_path, env, task_adapters=_task_stack(env, c, seen))
  for term in ("ce", "kl", "adapter_mse"):
    assert result.after[term] < result.before[term], (term, result.before, result.after)
  rows = [r for r in _metrics(tmp_path / "metrics.jsonl") if "train/lambda2" in r]
  assert len(rows) == 12
  for r in rows:
    assert math.isclose(r["train/lambda2"], 1000 / (1 + math.exp(-r["train/adapter_mse"])),
                        rel_tol=1e-5)


def test_stage2_with_the_instruction_in_context_as_teacher(files, env):
  c = _config(files)
  c.stage2.update(teacher="context", adapter_weight=0.0)
  stage = tagi_experiment.stage2(c, env["tasks"], env["base"], env["tokenizer"], ())
  assert stage.template.teacher == c.data.template_teacher
  assert not stage.tagi.needs_adapters
  seen = env["tasks"].names("seen")
  assert len(stage.examples) == len(seen) * c.tasks.n_train
  # Every example of a task shares its instruction's embedding; tasks differ.
  rows = {e.meta["task"]: stage.lookup.instruction[i] for i, e in enumerate(stage.examples)}
  assert len(set(rows.values())) == len(seen) == len(stage.lookup.embeddings)


@pytest.mark.slow
def test_job_trains_adapters_both_stages_every_ablation_and_scores_every_system(files, tmp_path):
  c = _config(files)
  c.ablations = "no_kl,no_alignment,no_stage1"
  summary = job_lib.run(tagi_experiment, c, str(tmp_path))
  for stage, terms in (("stage1", ["ce"]), ("stage2", ["ce", "kl"])):
    losses = summary["losses"][stage]
    for term in terms:
      assert losses["after"][term] < losses["before"][term], (stage, term, losses)
  for name, (split, _) in TASKS.items():
    has = os.path.exists(tmp_path / "adapters" / name / "lora" / "adapter.json")
    assert has == (split == "seen")
  assert summary["tasks"] == {name: split for name, (split, _) in TASKS.items()}
  systems = summary["systems"]
  assert set(systems) == set(tagi_experiment.SYSTEMS)
  assert set(systems["hypernet stage 2"]) == {"seen", "unseen"}
  assert set(systems["per-task LoRA"]) == {"seen"}  # unseen tasks have none
  assert systems["base"]["unseen"]["n"] == _config(files).tasks.n_test
  # The per-task LoRAs learned their constant answers; the base did not know them.
  assert systems["per-task LoRA"]["seen"]["rouge_l"] > systems["base"]["seen"]["rouge_l"]
  with open(tmp_path / "predictions.jsonl") as f:
    rows = [json.loads(line) for line in f]
  assert {r["system"] for r in rows} == set(tagi_experiment.SYSTEMS)
  assert all(math.isclose(r["rouge_l"], scoring.rouge_l(r["prediction"], r["answer"]))
             for r in rows)
  for name in tagi_experiment.ABLATIONS:
    assert os.path.exists(tmp_path / f"stage2_{name}" / "hypernet" / "hypernet.json")
  # FLOPs: the base's from its token counts alone; the instruction makes the prompt dearer.
  spec = load_model(files["model"]).spec
  base_rows = [r for r in rows if r["system"] == "base"]
  assert all(math.isclose(r["gflops"] * 1e9, spec.generation_flops(r["prompt_tokens"],
                                                                   r["new_tokens"]))
             for r in base_rows)
  assert all(1 <= r["new_tokens"] <= c.evaluation.max_new_tokens for r in rows)
  unseen_tasks = {name for name, (split, _) in TASKS.items() if split == "unseen"}
  assert set(summary["nearest_seen"]) == unseen_tasks
  assert all(summary["tasks"][n["task"]] == "seen" and -1 <= n["cosine"] <= 1 + 1e-6
             for n in summary["nearest_seen"].values())
  unseen = {s: v["unseen"]["gflops"] for s, v in systems.items() if "unseen" in v}
  assert unseen["base + instruction"] > unseen["base"]
  assert unseen["hypernet stage 2"] > unseen["base"]  # the LoRA and reading the instruction


def test_nearest_seen_task_is_the_most_similar_instruction_by_cosine():
  embeddings = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 3.0]),
                "x": np.array([2.0, 1.0]), "y": np.array([-1.0, 4.0])}
  split = {"a": "seen", "b": "seen", "x": "unseen", "y": "unseen"}
  nearest = tagi_experiment.nearest_seen(embeddings, split)
  assert nearest.keys() == {"x", "y"}
  assert nearest["x"]["task"] == "a" and math.isclose(nearest["x"]["cosine"], 2 / math.sqrt(5))
  assert nearest["y"]["task"] == "b" and math.isclose(nearest["y"]["cosine"], 4 / math.sqrt(17))
  results = {"base + instruction": {"tasks": {"x": {"exact_match": 0.5}}},
             "hypernet stage 2": {"tasks": {"x": {"exact_match": 0.25}}}}
  lines = tagi_experiment.nearest_table(nearest, results).splitlines()
  cells = [[c.strip() for c in line.split("|")] for line in lines[2:]]
  assert cells == [["x", "a", "0.894", "0.50", "0.25"], ["y", "b", "0.970", "-", "-"]]
  assert tagi_experiment.nearest_seen(embeddings, dict.fromkeys(embeddings, "unseen")) == {}


def _lora(values, batch=3):
  a = jnp.asarray(values[0], jnp.float32).reshape(batch, 1, 2, 1)
  b = jnp.asarray(values[1], jnp.float32).reshape(batch, 1, 1, 2)
  return Lora({"q": {"a": a, "b": b}}, scale=1.0)


def test_adapter_term_is_the_mse_over_valid_examples_weighted_by_its_sigmoid():
  gen = _lora((np.arange(6), np.zeros(6)))
  target = _lora((np.zeros(6), np.ones(6)))
  valid = jnp.asarray([1.0, 1.0, 0.0])  # the third example is padding
  s, n = tagi.adapter_mse(gen, target, valid)
  expected = (np.square(np.arange(4)).sum() + 4) / 8  # A: 0,1,2,3; B: four ones; 4 per example
  assert float(n) == 8 and math.isclose(float(s) / float(n), expected)
  loss_cfg = distill.LossConfig(kl_weight=0.5, ce_weight=1.0)
  cfg = tagi.TagiLoss(hypernet.HypernetConfig(), teacher="adapter", adapter_weight=2.0)
  terms = {"ce": (jnp.float32(6.0), jnp.float32(3.0)), "kl": (jnp.float32(1.0), jnp.float32(4.0)),
           "adapter_mse": (s, n)}
  loss, means = tagi.weighted_loss(terms, loss_cfg, cfg)
  lambda2 = 2.0 / (1 + math.exp(-expected))
  assert math.isclose(float(means["lambda2"]), lambda2, rel_tol=1e-6)
  assert math.isclose(float(loss), 2.0 + 0.5 * 0.25 + lambda2 * expected, rel_tol=1e-6)
  fixed = tagi.TagiLoss(hypernet.HypernetConfig(), adapter_weight=2.0, adapter_sigmoid=False)
  assert math.isclose(float(tagi.weighted_loss(terms, loss_cfg, fixed)[1]["lambda2"]), 2.0)
  # λ2 is a coefficient: the gradient of λ2·MSE is λ2 times the MSE's.
  grad = jax.grad(lambda x: tagi.weighted_loss({"adapter_mse": (x, n)}, loss_cfg, cfg)[0])(s)
  assert math.isclose(float(grad), lambda2 / 8, rel_tol=1e-5)


def test_lora_and_hypernet_flops_are_twice_the_multiplied_parameters(env):
  spec, cfg = env["base"].spec, hypernet.HypernetConfig(hidden=8, rank=2, targets=("q", "o"))
  lora = lora_lib.init(spec, cfg.lora_config(), jax.random.key(0))
  assert lora_lib.flops_per_token(spec, cfg.lora_config()) == 2 * lora_lib.num_params(lora)
  p = hypernet.init(spec, cfg, jax.random.key(0))
  cells = spec.num_layers * len(cfg.targets)  # the trunk runs once per (layer, target)
  heads = spec.num_layers * sum(h["a_w"].size + h["b_w"].size for h in p["heads"].values())
  mlp = 2 * (p["encoder"]["w"].size + cells * p["trunk"]["w"].size + heads)
  assert hypernet.task_flops(spec, cfg, 0) == mlp
  # Reading an instruction of n tokens costs what a prompt of n tokens costs, minus the head.
  head = 2 * spec.hidden_size * spec.vocab_size
  assert hypernet.task_flops(spec, cfg, 5) - mlp == spec.generation_flops(5, 1) - head


def test_unseen_tasks_train_nothing_and_seen_limit_caps_only_seen_tasks(files, env):
  tasks = env["tasks"]
  assert tasks.train["mat"] == [] and len(tasks.test["mat"]) == 4  # unseen
  assert tasks.test["mat"] == tasks.test["mat"][:4]
  assert all(len(tasks.train[t]) == 8 for t in ("cat", "dog", "fox"))
  c = _config(files)
  c.evaluation.seen_limit = 2
  test = tagi_experiment.test_examples(c, tasks)
  assert {t: len(ex) for t, ex in test.items()} == {"cat": 2, "dog": 2, "fox": 2, "mat": 4}
  c.evaluation.limit = 1
  assert {len(ex) for ex in tagi_experiment.test_examples(c, tasks).values()} == {1}


def test_a_suite_task_too_small_for_n_train_names_the_field():
  c = get_config("tiny")
  c.tasks.update(names="comparative", n_train=60)  # the task has 58 distinct inputs
  with pytest.raises(config_lib.ConfigError, match=r"config\.tasks\.n_train"):
    tagi_experiment.load_tasks(c)


@pytest.mark.parametrize("update, message", [
    (dict(ablations="no_rope"), "unknown"),
    (dict(ablations="no_stage1", stage1=dict(steps=0)), "no_stage1 needs stage1.steps"),
    (dict(ablations="no_kl", stage2=dict(kl_weight=0.0)), "no_kl needs"),
    (dict(ablations="no_alignment", stage2=dict(adapter_weight=0.0)), "no_alignment needs"),
])
def test_bad_ablations_fail_naming_the_field(files, update, message):
  c = _config(files)
  for key, value in update.items():
    if isinstance(value, dict):
      c[key].update(value)
    else:
      c[key] = value
  with pytest.raises(config_lib.ConfigError, match=rf"config\.ablations: .*{message}"):
    tagi_experiment.validate(c)


def test_rouge_l_matches_hand_computed_scores():
  # LCS of (the cat sat on the mat) and (the cat is on the mat) is "the cat on the mat": 5 of 6.
  assert math.isclose(scoring.rouge_l("the cat sat on the mat", "the cat is on the mat"), 5 / 6)
  # "a b c d" vs "a c": LCS 2, precision 1/2, recall 1, F1 = 2/3.
  assert math.isclose(scoring.rouge_l("a b c d", "a c"), 2 / 3)
  assert scoring.rouge_l("Paris.", "paris") == 1.0  # lower case, punctuation is no token
  assert scoring.rouge_l("", "paris") == 0.0 and scoring.rouge_l("london", "paris") == 0.0


def test_segments_move_the_space_onto_the_predicted_part():
  text = "one two three\nfour five six seven eight nine ten eleven"
  examples = tagi_experiment.segment_examples([text, text + " twelve thirteen three"], (3, 2, 2))
  assert len(examples) == 3  # 11 words hold one window of 7, 14 words two
  first = examples[0]
  assert (first.context, first.query, first.response) == ("one two three", "four five",
                                                          " six seven")
  assert (examples[2].context, examples[2].response) == ("eight nine ten", " thirteen three")
  assert [e.meta["text"] for e in examples] == [0, 1, 1]


@pytest.mark.parametrize("field, value, message", [
    ("stage2.teacher", "oracle", "config.stage2.teacher"),
    ("tasks.source", "/no/such/tasks.jsonl", "config.tasks.source"),
    ("stage1.segment_words", (4, 0, 2), "config.stage1.segment_words"),
    ("lora.targets", ("q", "wq"), "config.lora.targets"),
    ("stage2.kl_weight", -1.0, "config.stage2"),
    ("stage1.text", "/no/such/text.txt", "config.stage1.text"),
    ("stage1.text", "text.csv", "config.stage1.text"),
])
def test_bad_config_fails_with_one_line_naming_the_field(files, field, value, message):
  c = _config(files)
  group, name = field.split(".")
  c[group][name] = value
  with pytest.raises(config_lib.ConfigError, match=message.replace(".", r"\.")):
    tagi_experiment.validate(c)
