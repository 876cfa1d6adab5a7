"""rd's own generated multi-task suite: short tasks, each an instruction plus a deterministic
generator of (input, output) instances, split into seen and unseen tasks.

What it is for: a hypernetwork that reads a task's instruction and writes a LoRA (TAGI) trains
on the seen tasks and is tested on the unseen ones; instruction internalization
(`rd.methods.context_distill.instructions`) distils "instruction + worked examples + input" into "input only".

* `TASKS`: name -> `Task(name, family, instruction, split, generator)`; `task.sample(rng, n)`
  draws n instances with distinct inputs. Families group tasks that work alike (letters of a
  word, word lists, arithmetic, ...); every family has seen and unseen tasks, the unseen ones
  following a *different rule* in the same format (seen: "first word of the list", unseen:
  "second word"), so what transfers is reading the instruction.
* Outputs are short (a few tokens) and checked exactly (`is_correct`: the stripped prediction
  equals the output, case and punctuation included).
* `task_examples(name, n, k=..., seed=..., skip=...)` turns instances into `Example`s: context =
  the instruction and k worked examples (the same k for the whole task, like the "Positive
  Examples" of Super-NaturalInstructions), query = the input, response = " output\\n",
  meta = {task, family, split, instruction, answer}. The instances are a deterministic stream
  per (task, seed): the shots are its first k, instance i is its (k + i)-th, so
  `skip` gives disjoint train and test instances.
* Prompts: `TEACHER_TEMPLATE` renders "context\\n\\nInput: x\\nOutput:", the same format as the
  shots; `STUDENT_TEMPLATE` is "Input: x\\nOutput:".

The task set was chosen so that Gemma 3 270M (base) does each task at least sometimes with the
instruction and 3 worked examples in its prompt (greedy, 16 instances a task:
`python -m launch.task_suite_eval`): 79 tasks, every one above 0 % (mean 65.6 % on the 56 seen,
64.1 % on the 23 unseen tasks; lexical, formatting and lookup 88-100 %, arithmetic 34-38 %).
Eight candidates at 0 % were dropped (first three / last two letters, reversing or
beheading a word, counting words, adding two numbers, halving, subtracting two numbers).
Yes/no tasks near 50 % are at chance.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence

from rd.tasks import task_words as tw
from rd.data.examples import Example

TEACHER_TEMPLATE = "{context}\n\nInput: {query}\nOutput:"
STUDENT_TEMPLATE = "Input: {query}\nOutput:"
RESPONSE_FORMAT = " {output}\n"
SPLITS = ("seen", "unseen")

Instance = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  family: str
  instruction: str
  split: str  # "seen" or "unseen"
  generator: Callable[[random.Random], Instance]

  def sample(self, rng: random.Random, n: int) -> list[Instance]:
    """n instances with distinct inputs, drawn with `rng` (a prefix of a longer draw with the
    same rng state). Raises if the task cannot make n distinct inputs."""
    out, seen, misses = [], set(), 0
    while len(out) < n:
      x, y = self.generator(rng)
      if x in seen:
        misses += 1
        if misses > 200 + 50 * n:
          raise ValueError(f"task {self.name}: cannot draw {n} distinct inputs")
        continue
      seen.add(x)
      out.append((x, y))
    return out


TASKS: dict[str, Task] = {}


def _task(family: str, split: str, instruction: str):
  """Registers the decorated generator as a task named after the function."""
  def register(fn: Callable[[random.Random], Instance]):
    if fn.__name__ in TASKS:
      raise ValueError(f"duplicate task {fn.__name__}")
    TASKS[fn.__name__] = Task(fn.__name__, family, instruction, split, fn)
    return fn
  return register


def _words(rng: random.Random, lo: int, hi: int, pool: Sequence[str] = tw.WORDS) -> list[str]:
  return rng.sample(pool, rng.randint(lo, hi))


def _comma(items: Sequence[object]) -> str:
  return ", ".join(str(i) for i in items)


def _yes_no(rng: random.Random, yes: Sequence[str], no: Sequence[str]) -> Instance:
  """A balanced yes/no instance: the label first, then a word from its pool."""
  if rng.random() < 0.5:
    return rng.choice(yes), "yes"
  return rng.choice(no), "no"


def _name(rng: random.Random) -> tuple[str, str]:
  return rng.choice(tw.FIRST_NAMES), rng.choice(tw.LAST_NAMES)


# ----------------------------------------------------------------------------------------------
# letters: one word in, a part or a form of it out


@_task("letters", "seen", "Write the first letter of the word.")
def first_letter(rng):
  w = rng.choice(tw.WORDS)
  return w, w[0]


@_task("letters", "seen", "Write the last letter of the word.")
def last_letter(rng):
  w = rng.choice(tw.WORDS)
  return w, w[-1]


@_task("letters", "seen", "Write the word in capital letters.")
def uppercase_word(rng):
  w = rng.choice(tw.WORDS)
  return w, w.upper()


@_task("letters", "seen", "Count the letters of the word and write the number.")
def word_length(rng):
  w = rng.choice(tw.WORDS)
  return w, str(len(w))


@_task("letters", "seen", "Write the word two times, separated by a space.")
def repeat_word(rng):
  w = rng.choice(tw.WORDS)
  return w, f"{w} {w}"


@_task("letters", "unseen", "Write the second letter of the word.")
def second_letter(rng):
  w = rng.choice(tw.WORDS)
  return w, w[1]


@_task("letters", "unseen", "Write the word with its first letter capitalized.")
def capitalize_word(rng):
  w = rng.choice(tw.WORDS)
  return w, w.capitalize()


# ----------------------------------------------------------------------------------------------
# word lists: a comma-separated list in


@_task("word_lists", "seen", "Write the first word of the list.")
def first_word(rng):
  ws = _words(rng, 3, 5)
  return _comma(ws), ws[0]


@_task("word_lists", "seen", "Write the last word of the list.")
def last_word(rng):
  ws = _words(rng, 3, 5)
  return _comma(ws), ws[-1]


@_task("word_lists", "seen", "Write the words of the list in reverse order, separated by commas.")
def reverse_list(rng):
  ws = _words(rng, 2, 3)
  return _comma(ws), _comma(ws[::-1])


@_task("word_lists", "seen", "Join the words of the list with hyphens.")
def join_hyphens(rng):
  ws = _words(rng, 2, 4)
  return _comma(ws), "-".join(ws)


@_task("word_lists", "seen", "Write the list without its last word.")
def drop_last_word(rng):
  ws = _words(rng, 3, 4)
  return _comma(ws), _comma(ws[:-1])


@_task("word_lists", "seen", "Write the longest word of the list.")
def longest_word(rng):
  while True:
    ws = _words(rng, 3, 4)
    lengths = sorted(len(w) for w in ws)
    if lengths[-1] > lengths[-2]:
      return _comma(ws), max(ws, key=len)


@_task("word_lists", "unseen", "Write the second word of the list.")
def second_word(rng):
  ws = _words(rng, 3, 5)
  return _comma(ws), ws[1]


@_task("word_lists", "unseen", "Join the words of the list with underscores.")
def join_underscores(rng):
  ws = _words(rng, 2, 4)
  return _comma(ws), "_".join(ws)


@_task("word_lists", "unseen", "Write the list without its first word.")
def drop_first_word(rng):
  ws = _words(rng, 3, 4)
  return _comma(ws), _comma(ws[1:])


# ----------------------------------------------------------------------------------------------
# arithmetic: numbers in, a number out


@_task("arithmetic", "seen", "Multiply the two numbers and write the product.")
def multiply_numbers(rng):
  a, b = rng.randint(2, 12), rng.randint(2, 12)
  return _comma((a, b)), str(a * b)


@_task("arithmetic", "seen", "Add one to the number.")
def add_one(rng):
  a = rng.randint(1, 999)
  return str(a), str(a + 1)


@_task("arithmetic", "seen", "Add ten to the number.")
def add_ten(rng):
  a = rng.randint(1, 500)
  return str(a), str(a + 10)


@_task("arithmetic", "seen", "Double the number: write two times the number.")
def double_number(rng):
  a = rng.randint(1, 200)
  return str(a), str(2 * a)


@_task("arithmetic", "seen", "Add the three numbers and write the sum.")
def sum_of_three(rng):
  xs = [rng.randint(1, 20) for _ in range(3)]
  return _comma(xs), str(sum(xs))


@_task("arithmetic", "unseen", "Subtract one from the number.")
def subtract_one(rng):
  a = rng.randint(2, 999)
  return str(a), str(a - 1)


@_task("arithmetic", "unseen", "Add one hundred to the number.")
def add_hundred(rng):
  a = rng.randint(1, 800)
  return str(a), str(a + 100)


# ----------------------------------------------------------------------------------------------
# number properties: one number in, a label out


@_task("number_properties", "seen", "Is the number even or odd? Answer even or odd.")
def even_or_odd(rng):
  a = rng.randint(1, 999)
  return str(a), "even" if a % 2 == 0 else "odd"


@_task("number_properties", "seen", "Is the number greater than 50? Answer yes or no.")
def greater_than_50(rng):
  a = rng.randint(51, 99) if rng.random() < 0.5 else rng.randint(1, 50)
  return str(a), "yes" if a > 50 else "no"


@_task("number_properties", "seen", "Is the number positive or negative? Answer positive or "
       "negative.")
def positive_or_negative(rng):
  a = rng.randint(1, 99) * rng.choice((1, -1))
  return str(a), "positive" if a > 0 else "negative"


@_task("number_properties", "seen", "How many digits does the number have? Write the number of "
       "digits.")
def count_digits(rng):
  a = rng.randint(1, 10 ** rng.randint(1, 5) - 1)
  return str(a), str(len(str(a)))


@_task("number_properties", "seen", "Write the last digit of the number.")
def last_digit(rng):
  a = rng.randint(10, 9999)
  return str(a), str(a)[-1]


@_task("number_properties", "seen", "Write the first digit of the number.")
def first_digit(rng):
  a = rng.randint(10, 9999)
  return str(a), str(a)[0]


@_task("number_properties", "unseen", "Is the number smaller than 100? Answer yes or no.")
def smaller_than_100(rng):
  a = rng.randint(1, 99) if rng.random() < 0.5 else rng.randint(100, 999)
  return str(a), "yes" if a < 100 else "no"


@_task("number_properties", "unseen", "Does the number end in zero? Answer yes or no.")
def ends_in_zero(rng):
  a = 10 * rng.randint(1, 99) if rng.random() < 0.5 else rng.randint(1, 999)
  return str(a), "yes" if a % 10 == 0 else "no"


# ----------------------------------------------------------------------------------------------
# comparison: two items in, one of them (or a label) out


@_task("comparison", "seen", "Write the larger of the two numbers.")
def larger_number(rng):
  a, b = rng.sample(range(1, 100), 2)
  return _comma((a, b)), str(max(a, b))


@_task("comparison", "seen", "Write the longer of the two words.")
def longer_word(rng):
  while True:
    a, b = rng.sample(tw.WORDS, 2)
    if len(a) != len(b):
      return _comma((a, b)), max(a, b, key=len)


@_task("comparison", "seen", "Write the word that comes first in alphabetical order.")
def alphabetical_first(rng):
  a, b = rng.sample(tw.WORDS, 2)
  return _comma((a, b)), min(a, b)


@_task("comparison", "seen", "Are the two numbers equal? Answer yes or no.")
def equal_numbers(rng):
  a = rng.randint(1, 99)
  b = a if rng.random() < 0.5 else rng.randint(1, 99)
  return _comma((a, b)), "yes" if a == b else "no"


@_task("comparison", "seen", "Do the two words start with the same letter? Answer yes or no.")
def same_first_letter(rng):
  a = rng.choice(tw.WORDS)
  same = [w for w in tw.WORDS if w[0] == a[0] and w != a]
  b = rng.choice(same) if same and rng.random() < 0.5 else rng.choice(tw.WORDS)
  if b == a:
    b = rng.choice([w for w in tw.WORDS if w[0] != a[0]])
  return _comma((a, b)), "yes" if a[0] == b[0] else "no"


@_task("comparison", "unseen", "Write the smaller of the two numbers.")
def smaller_number(rng):
  a, b = rng.sample(range(1, 100), 2)
  return _comma((a, b)), str(min(a, b))


@_task("comparison", "unseen", "Write the shorter of the two words.")
def shorter_word(rng):
  while True:
    a, b = rng.sample(tw.WORDS, 2)
    if len(a) != len(b):
      return _comma((a, b)), min(a, b, key=len)


# ----------------------------------------------------------------------------------------------
# word classes: one word in, a label out

_CATEGORIES = {"animal": tw.ANIMALS, "fruit": tw.FRUITS, "color": tw.COLORS,
               "vehicle": tw.VEHICLES}
_NOT_INVARIANT = tuple(n for n in tw.NOUNS if tw.plural(n) != n)


@_task("word_classes", "seen", "Is the word an animal or a fruit? Answer animal or fruit.")
def animal_or_fruit(rng):
  label = rng.choice(("animal", "fruit"))
  return rng.choice(_CATEGORIES[label]), label


@_task("word_classes", "seen", "Which category does the word belong to: animal, fruit, color or "
       "vehicle?")
def word_category(rng):
  label = rng.choice(tuple(_CATEGORIES))
  return rng.choice(_CATEGORIES[label]), label


@_task("word_classes", "seen", "Is the word a color? Answer yes or no.")
def is_color(rng):
  return _yes_no(rng, tw.COLORS + tw.MORE_COLORS, tw.ANIMALS + tw.FRUITS + tw.OBJECTS)


# Every single word of the lexicon, for the letter questions that need many words of a kind.
_ALL_WORDS = tuple(dict.fromkeys(tw.WORDS + tuple(tw.VERBS) + tuple(tw.ADJECTIVES) +
                                 tuple(w for pair in tw.ANTONYMS for w in pair)))


@_task("word_classes", "seen", "Does the word start with a vowel (a, e, i, o, u)? Answer yes or "
       "no.")
def starts_with_vowel(rng):
  return _yes_no(rng, [w for w in _ALL_WORDS if w[0] in "aeiou"],
                 [w for w in _ALL_WORDS if w[0] not in "aeiou"])


@_task("word_classes", "seen", "Is the word singular or plural? Answer singular or plural.")
def singular_or_plural(rng):
  w = rng.choice(_NOT_INVARIANT)
  return (w, "singular") if rng.random() < 0.5 else (tw.plural(w), "plural")


@_task("word_classes", "seen", "Does the word have more than five letters? Answer yes or no.")
def longer_than_five(rng):
  return _yes_no(rng, [w for w in tw.WORDS if len(w) > 5], [w for w in tw.WORDS if len(w) <= 5])


@_task("word_classes", "unseen", "Is the word an animal? Answer yes or no.")
def is_animal(rng):
  return _yes_no(rng, tw.ANIMALS, tw.FRUITS + tw.VEHICLES + tw.OBJECTS)


@_task("word_classes", "unseen", "Is the word a fruit or a vehicle? Answer fruit or vehicle.")
def fruit_or_vehicle(rng):
  label = rng.choice(("fruit", "vehicle"))
  return rng.choice(_CATEGORIES[label]), label


# ----------------------------------------------------------------------------------------------
# lexical: a word in, a related word out

_ANTONYMS = dict(tw.ANTONYMS) | {b: a for a, b in tw.ANTONYMS}


@_task("lexical", "seen", "Write the plural form of the noun.")
def plural_noun(rng):
  w = rng.choice(tw.NOUNS)
  return w, tw.plural(w)


@_task("lexical", "seen", "Write the past tense of the verb.")
def past_tense(rng):
  v = rng.choice(tuple(tw.VERBS))
  return v, tw.VERBS[v][0]


@_task("lexical", "seen", "Write the opposite of the word.")
def antonym(rng):
  w = rng.choice(tuple(_ANTONYMS))
  return w, _ANTONYMS[w]


@_task("lexical", "seen", "Write the number in English words.")
def number_to_word(rng):
  n = rng.randint(0, 99)
  return str(n), tw.number_word(n)


@_task("lexical", "seen", "Write the capital city of the country.")
def capital_of_country(rng):
  c = rng.choice(tuple(tw.CAPITALS))
  return c, tw.CAPITALS[c]


@_task("lexical", "seen", "Write the comparative form of the adjective.")
def comparative(rng):
  a = rng.choice(tuple(tw.ADJECTIVES))
  return a, tw.ADJECTIVES[a][0]


@_task("lexical", "seen", "Write the -ing form of the verb.")
def ing_form(rng):
  v = rng.choice(tuple(tw.VERBS))
  return v, tw.VERBS[v][1]


@_task("lexical", "unseen", "Write the singular form of the noun.")
def singular_noun(rng):
  w = rng.choice(_NOT_INVARIANT)
  return tw.plural(w), w


@_task("lexical", "unseen", "Write the number given in words as digits.")
def word_to_number(rng):
  n = rng.randint(0, 99)
  return tw.number_word(n), str(n)


@_task("lexical", "unseen", "Write the superlative form of the adjective.")
def superlative(rng):
  a = rng.choice(tuple(tw.ADJECTIVES))
  return a, tw.ADJECTIVES[a][1]


# ----------------------------------------------------------------------------------------------
# formatting: the same content, written another way


@_task("formatting", "seen", "Write the name as last name, comma, first name.")
def last_comma_first(rng):
  first, last = _name(rng)
  return f"{first} {last}", f"{last}, {first}"


@_task("formatting", "seen", "Write the initials of the name, each followed by a period.")
def initials(rng):
  first, last = _name(rng)
  return f"{first} {last}", f"{first[0]}.{last[0]}."


@_task("formatting", "seen", "Put the word in square brackets.")
def square_brackets(rng):
  w = rng.choice(tw.WORDS)
  return w, f"[{w}]"


@_task("formatting", "seen", "Write the amount in dollars with a dollar sign and two decimals.")
def dollars(rng):
  a = rng.randint(1, 999)
  return str(a), f"${a}.00"


@_task("formatting", "seen", "Rewrite the date from year-month-day to day/month/year.")
def date_dmy(rng):
  y, m, d = rng.randint(1950, 2030), rng.randint(1, 12), rng.randint(1, 28)
  return f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}"


@_task("formatting", "seen", "Write an email address for the person: first name, a dot, last name, "
       "in lower case, at example.com.")
def email_address(rng):
  first, last = _name(rng)
  return f"{first} {last}", f"{first.lower()}.{last.lower()}@example.com"


@_task("formatting", "seen", "Write the words in lower case, joined by underscores.")
def snake_case(rng):
  ws = [w.capitalize() for w in _words(rng, 2, 3)]
  return " ".join(ws), "_".join(w.lower() for w in ws)


@_task("formatting", "unseen", "Put the word in parentheses.")
def parentheses(rng):
  w = rng.choice(tw.WORDS)
  return w, f"({w})"


@_task("formatting", "unseen", "Rewrite the name given as last name, comma, first name as first "
       "name then last name.")
def first_then_last(rng):
  first, last = _name(rng)
  return f"{last}, {first}", f"{first} {last}"


@_task("formatting", "unseen", "Write the year of the date.")
def year_of_date(rng):
  y, m, d = rng.randint(1950, 2030), rng.randint(1, 12), rng.randint(1, 28)
  return f"{y}-{m:02d}-{d:02d}", str(y)


# ----------------------------------------------------------------------------------------------
# lookup: find one item in a short text

_SENTENCES = ("{name} saw {n} {color} {animals} in {city}.",
              "In {city}, {name} counted {n} {color} {animals}.",
              "{n} {color} {animals} followed {name} through {city}.",
              "Near {city}, {n} {color} {animals} woke {name} up.")


def _sentence(rng) -> tuple[str, dict[str, str]]:
  animal = rng.choice(tw.ANIMALS)
  slots = {"name": rng.choice(tw.FIRST_NAMES), "n": str(rng.randint(2, 12)),
           "color": rng.choice(tw.COLORS), "animals": tw.plural(animal),
           "city": rng.choice(tw.CITIES)}
  text = rng.choice(_SENTENCES).format(**slots)
  return text[0].upper() + text[1:], slots


def _record(rng) -> tuple[str, dict[str, str]]:
  first, last = _name(rng)
  fields = {"name": f"{first} {last}", "city": rng.choice(tw.CITIES),
            "age": str(rng.randint(18, 90)), "job": rng.choice(tw.JOBS)}
  keys = list(fields)
  rng.shuffle(keys)
  return "; ".join(f"{k}: {fields[k]}" for k in keys), fields


@_task("lookup", "seen", "Write the name of the person in the sentence.")
def sentence_name(rng):
  text, slots = _sentence(rng)
  return text, slots["name"]


@_task("lookup", "seen", "Write the number that appears in the sentence.")
def sentence_number(rng):
  text, slots = _sentence(rng)
  return text, slots["n"]


@_task("lookup", "seen", "Write the color mentioned in the sentence.")
def sentence_color(rng):
  text, slots = _sentence(rng)
  return text, slots["color"]


@_task("lookup", "seen", "Write the city mentioned in the sentence.")
def sentence_city(rng):
  text, slots = _sentence(rng)
  return text, slots["city"]


@_task("lookup", "seen", "Write the city from the record.")
def record_city(rng):
  text, fields = _record(rng)
  return text, fields["city"]


@_task("lookup", "seen", "Write the age from the record.")
def record_age(rng):
  text, fields = _record(rng)
  return text, fields["age"]


@_task("lookup", "unseen", "Write the animals mentioned in the sentence, as written there.")
def sentence_animals(rng):
  text, slots = _sentence(rng)
  return text, slots["animals"]


@_task("lookup", "unseen", "Write the job from the record.")
def record_job(rng):
  text, fields = _record(rng)
  return text, fields["job"]


# ----------------------------------------------------------------------------------------------
# sequences: continue a short sequence


@_task("sequences", "seen", "Write the next number of the sequence.")
def count_up(rng):
  start, n = rng.randint(1, 95), rng.randint(3, 4)
  return _comma(range(start, start + n)), str(start + n)


@_task("sequences", "seen", "The numbers go up by the same step. Write the next number.")
def step_up(rng):
  start, step = rng.randint(1, 30), rng.randint(2, 5)
  return _comma(range(start, start + 3 * step, step)), str(start + 3 * step)


@_task("sequences", "seen", "The colors repeat in a pattern. Write the next color.")
def color_pattern(rng):
  a, b = rng.sample(tw.COLORS, 2)
  n = rng.randint(3, 5)
  seq = [(a, b)[i % 2] for i in range(n + 1)]
  return _comma(seq[:-1]), seq[-1]


@_task("sequences", "unseen", "Write the next number of the sequence, which counts down.")
def count_down(rng):
  start, n = rng.randint(10, 99), rng.randint(3, 4)
  return _comma(range(start, start - n, -1)), str(start - n)


@_task("sequences", "unseen", "The numbers go down by the same step. Write the next number.")
def step_down(rng):
  start, step = rng.randint(20, 99), rng.randint(2, 5)
  return _comma(range(start, start - 3 * step, -step)), str(start - 3 * step)


# ----------------------------------------------------------------------------------------------
# Instances -> Examples


def task_rng(name: str, seed: int) -> random.Random:
  """The task's own stream: independent of every other task and of task order."""
  return random.Random(f"rd.task_suite/{seed}/{name}")


def draw(name: str, n: int, *, k: int = 3, seed: int = 0,
         skip: int = 0) -> tuple[list[Instance], list[Instance]]:
  """(shots, instances): the first k instances of the task's stream, and instances
  k + skip .. k + skip + n - 1 (all with distinct inputs)."""
  stream = TASKS[name].sample(task_rng(name, seed), k + skip + n)
  return stream[:k], stream[k + skip:]


def render_context(instruction: str, shots: Sequence[Instance]) -> str:
  """The instruction, then each worked example in the prompt's own Input/Output format."""
  return "\n\n".join([instruction] + [f"Input: {x}\nOutput: {y}" for x, y in shots])


def to_example(task: Task, shots: Sequence[Instance], instance: Instance) -> Example:
  x, y = instance
  return Example(context=render_context(task.instruction, shots), query=x,
                 response=RESPONSE_FORMAT.format(output=y),
                 meta={"task": task.name, "family": task.family, "split": task.split,
                       "instruction": task.instruction, "answer": y})


def task_examples(name: str, n: int, *, k: int = 3, seed: int = 0,
                  skip: int = 0) -> list[Example]:
  """n `Example`s of one task (see the module docstring); `skip` instances are passed over
  first, so (skip=0, n=a) and (skip=a, n=b) are disjoint train and test sets."""
  if name not in TASKS:
    raise KeyError(f"unknown task {name!r}; see rd.tasks.task_suite.TASKS")
  shots, instances = draw(name, n, k=k, seed=seed, skip=skip)
  return [to_example(TASKS[name], shots, i) for i in instances]


def task_names(split: str | None = None, family: str | None = None) -> list[str]:
  """Task names in registration order, optionally of one split and/or family."""
  if split is not None and split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  return [t.name for t in TASKS.values()
          if (split is None or t.split == split) and (family is None or t.family == family)]


def families() -> list[str]:
  return list(dict.fromkeys(t.family for t in TASKS.values()))


def is_correct(prediction: str, output: str) -> bool:
  """Exact match: the prediction's first non-empty line, stripped, equals the output."""
  line = next((l.strip() for l in prediction.split("\n") if l.strip()), "")
  return line == output.strip()
