"""The lexicon behind the generated task suite (`rd.tasks.task_suite`): common English words by
category, inflections, antonyms, countries and capitals, names and cities.

Everything is a tuple or a dict with a fixed order, so sampling from it with a seeded
`random.Random` is deterministic. Words are common and short, so a small base model knows them
and each fits in a few tokens; the inflections are written out (no rules), so every gold answer
is correct English.
"""

from __future__ import annotations

ANIMALS = ("cat", "dog", "horse", "cow", "sheep", "goat", "pig", "lion", "tiger", "bear", "wolf",
           "fox", "rabbit", "mouse", "deer", "zebra", "monkey", "camel", "eagle", "owl", "duck",
           "goose", "frog", "snake", "shark", "whale", "dolphin", "turtle", "spider", "bee",
           "ant", "donkey", "parrot", "penguin", "giraffe", "elephant", "squirrel", "kangaroo",
           "otter", "beaver")
FRUITS = ("apple", "banana", "pear", "grape", "lemon", "lime", "cherry", "peach", "plum",
          "mango", "melon", "kiwi", "strawberry", "raspberry", "pineapple", "coconut", "apricot",
          "fig", "papaya", "watermelon", "blueberry", "avocado", "guava", "tangerine", "nectarine")
COLORS = ("red", "blue", "green", "yellow", "black", "white", "brown", "purple", "pink", "gray",
          "gold", "silver", "violet", "orange")
# More colour words, for the yes/no colour question only (the lookup sentences use COLORS).
MORE_COLORS = ("beige", "navy", "teal", "maroon", "olive", "crimson", "cyan", "magenta",
               "indigo", "turquoise", "lavender", "ivory", "scarlet", "tan", "coral")
VEHICLES = ("car", "bus", "train", "truck", "bicycle", "boat", "ship", "plane", "taxi",
            "tractor", "scooter", "van", "tram", "helicopter", "canoe", "rocket")
OBJECTS = ("table", "chair", "window", "door", "house", "garden", "river", "mountain", "forest",
           "city", "bottle", "cup", "plate", "spoon", "knife", "book", "pencil", "paper",
           "letter", "clock", "lamp", "candle", "pillow", "blanket", "basket", "bucket", "ladder",
           "hammer", "bridge", "tower", "castle", "island", "beach", "desert", "valley", "road",
           "street", "market", "school", "church", "office", "kitchen", "mirror", "jacket",
           "shirt", "hat", "shoe", "glove", "ring", "button", "coin", "key", "rope", "wheel",
           "engine", "box", "glass", "brush", "dress", "baby", "party", "story", "leaf", "wife",
           "child", "foot", "tooth", "man", "woman", "person")
# Nouns for the single-word tasks (no fruit/colour ambiguity: "orange" is a colour only).
WORDS = ANIMALS + FRUITS + VEHICLES + OBJECTS[:60]

IRREGULAR_PLURALS = {"mouse": "mice", "goose": "geese", "sheep": "sheep", "deer": "deer",
                     "wolf": "wolves", "knife": "knives", "leaf": "leaves", "wife": "wives",
                     "child": "children", "foot": "feet", "tooth": "teeth", "man": "men",
                     "woman": "women", "person": "people", "fish": "fish"}


def plural(noun: str) -> str:
  """English plural of the nouns in this module (irregular ones are listed)."""
  if noun in IRREGULAR_PLURALS:
    return IRREGULAR_PLURALS[noun]
  if noun.endswith(("s", "x", "ch", "sh")):
    return noun + "es"
  if noun.endswith("y") and noun[-2] not in "aeiou":
    return noun[:-1] + "ies"
  if noun in ("mango", "tomato", "potato"):
    return noun + "es"
  return noun + "s"


NOUNS = ANIMALS + FRUITS + VEHICLES + OBJECTS  # every one has a `plural`

# base -> (past tense, -ing form)
VERBS = {
    "walk": ("walked", "walking"), "jump": ("jumped", "jumping"), "play": ("played", "playing"),
    "open": ("opened", "opening"), "help": ("helped", "helping"), "cook": ("cooked", "cooking"),
    "clean": ("cleaned", "cleaning"), "paint": ("painted", "painting"),
    "look": ("looked", "looking"), "call": ("called", "calling"), "ask": ("asked", "asking"),
    "work": ("worked", "working"), "start": ("started", "starting"), "pull": ("pulled", "pulling"),
    "push": ("pushed", "pushing"), "wash": ("washed", "washing"), "watch": ("watched", "watching"),
    "listen": ("listened", "listening"), "climb": ("climbed", "climbing"),
    "kick": ("kicked", "kicking"), "laugh": ("laughed", "laughing"), "rain": ("rained", "raining"),
    "fill": ("filled", "filling"), "learn": ("learned", "learning"),
    "visit": ("visited", "visiting"),
    "want": ("wanted", "wanting"), "need": ("needed", "needing"), "end": ("ended", "ending"),
    "dance": ("danced", "dancing"), "smile": ("smiled", "smiling"), "move": ("moved", "moving"),
    "live": ("lived", "living"), "love": ("loved", "loving"), "close": ("closed", "closing"),
    "bake": ("baked", "baking"), "hope": ("hoped", "hoping"), "use": ("used", "using"),
    "carry": ("carried", "carrying"), "cry": ("cried", "crying"), "try": ("tried", "trying"),
    "study": ("studied", "studying"), "stop": ("stopped", "stopping"),
    "plan": ("planned", "planning"),
    "drop": ("dropped", "dropping"), "shop": ("shopped", "shopping"), "hug": ("hugged", "hugging"),
    "go": ("went", "going"), "see": ("saw", "seeing"), "eat": ("ate", "eating"),
    "drink": ("drank", "drinking"), "run": ("ran", "running"), "swim": ("swam", "swimming"),
    "sing": ("sang", "singing"), "write": ("wrote", "writing"), "read": ("read", "reading"),
    "take": ("took", "taking"), "give": ("gave", "giving"), "make": ("made", "making"),
    "come": ("came", "coming"), "sit": ("sat", "sitting"), "stand": ("stood", "standing"),
    "speak": ("spoke", "speaking"), "buy": ("bought", "buying"), "bring": ("brought", "bringing"),
    "think": ("thought", "thinking"), "teach": ("taught", "teaching"),
    "catch": ("caught", "catching"), "fly": ("flew", "flying"), "drive": ("drove", "driving"),
    "ride": ("rode", "riding"), "sleep": ("slept", "sleeping"), "feel": ("felt", "feeling"),
    "keep": ("kept", "keeping"), "find": ("found", "finding"), "tell": ("told", "telling"),
    "sell": ("sold", "selling"), "win": ("won", "winning"), "begin": ("began", "beginning"),
    "grow": ("grew", "growing"), "know": ("knew", "knowing"), "throw": ("threw", "throwing"),
    "draw": ("drew", "drawing"), "break": ("broke", "breaking"), "choose": ("chose", "choosing"),
    "forget": ("forgot", "forgetting"), "hide": ("hid", "hiding"), "lose": ("lost", "losing"),
    "meet": ("met", "meeting"), "pay": ("paid", "paying"), "send": ("sent", "sending"),
    "build": ("built", "building"), "leave": ("left", "leaving"), "hold": ("held", "holding"),
}

ANTONYMS = (("hot", "cold"), ("big", "small"), ("tall", "short"), ("fast", "slow"),
            ("happy", "sad"), ("old", "young"), ("rich", "poor"), ("hard", "soft"),
            ("light", "dark"), ("wet", "dry"), ("open", "closed"), ("early", "late"),
            ("full", "empty"), ("high", "low"), ("strong", "weak"),
            ("clean", "dirty"), ("good", "bad"), ("loud", "quiet"), ("thick", "thin"),
            ("up", "down"), ("left", "right"), ("in", "out"), ("day", "night"),
            ("black", "white"), ("win", "lose"), ("buy", "sell"), ("push", "pull"),
            ("begin", "end"), ("near", "far"), ("true", "false"), ("yes", "no"),
            ("always", "never"), ("first", "last"), ("inside", "outside"), ("above", "below"),
            ("before", "after"), ("easy", "difficult"), ("cheap", "expensive"),
            ("safe", "dangerous"), ("wide", "narrow"), ("deep", "shallow"),
            ("sweet", "sour"), ("love", "hate"), ("friend", "enemy"), ("north", "south"),
            ("east", "west"), ("question", "answer"), ("laugh", "cry"), ("give", "take"),
            ("come", "go"), ("boy", "girl"), ("king", "queen"), ("summer", "winter"))

# adjective -> (comparative, superlative)
ADJECTIVES = {
    "big": ("bigger", "biggest"), "small": ("smaller", "smallest"), "tall": ("taller", "tallest"),
    "short": ("shorter", "shortest"), "fast": ("faster", "fastest"), "slow": ("slower", "slowest"),
    "old": ("older", "oldest"), "young": ("younger", "youngest"), "hot": ("hotter", "hottest"),
    "cold": ("colder", "coldest"), "long": ("longer", "longest"),
    "strong": ("stronger", "strongest"),
    "weak": ("weaker", "weakest"), "rich": ("richer", "richest"), "poor": ("poorer", "poorest"),
    "high": ("higher", "highest"), "low": ("lower", "lowest"), "dark": ("darker", "darkest"),
    "light": ("lighter", "lightest"), "hard": ("harder", "hardest"), "soft": ("softer", "softest"),
    "loud": ("louder", "loudest"), "quiet": ("quieter", "quietest"),
    "clean": ("cleaner", "cleanest"),
    "kind": ("kinder", "kindest"), "warm": ("warmer", "warmest"), "cool": ("cooler", "coolest"),
    "deep": ("deeper", "deepest"), "wide": ("wider", "widest"), "large": ("larger", "largest"),
    "nice": ("nicer", "nicest"), "safe": ("safer", "safest"), "brave": ("braver", "bravest"),
    "late": ("later", "latest"), "thin": ("thinner", "thinnest"), "fat": ("fatter", "fattest"),
    "sad": ("sadder", "saddest"), "wet": ("wetter", "wettest"), "happy": ("happier", "happiest"),
    "easy": ("easier", "easiest"), "busy": ("busier", "busiest"), "early": ("earlier", "earliest"),
    "heavy": ("heavier", "heaviest"), "funny": ("funnier", "funniest"), "dry": ("drier", "driest"),
    "good": ("better", "best"), "bad": ("worse", "worst"), "far": ("farther", "farthest"),
    "cheap": ("cheaper", "cheapest"), "sweet": ("sweeter", "sweetest"),
    "fresh": ("fresher", "freshest"), "smart": ("smarter", "smartest"),
    "bright": ("brighter", "brightest"), "thick": ("thicker", "thickest"),
    "close": ("closer", "closest"), "great": ("greater", "greatest"),
    "green": ("greener", "greenest"), "calm": ("calmer", "calmest"),
}

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid",
    "Portugal": "Lisbon", "England": "London", "Ireland": "Dublin", "Norway": "Oslo",
    "Sweden": "Stockholm", "Finland": "Helsinki", "Denmark": "Copenhagen", "Poland": "Warsaw",
    "Austria": "Vienna", "Greece": "Athens", "Russia": "Moscow", "Japan": "Tokyo",
    "China": "Beijing", "India": "New Delhi", "Egypt": "Cairo", "Peru": "Lima",
    "Canada": "Ottawa", "Australia": "Canberra", "Mexico": "Mexico City", "Cuba": "Havana",
    "Hungary": "Budapest", "Belgium": "Brussels", "Netherlands": "Amsterdam",
    "Switzerland": "Bern", "Turkey": "Ankara", "Iran": "Tehran", "Iraq": "Baghdad",
    "Kenya": "Nairobi", "Argentina": "Buenos Aires", "Chile": "Santiago", "Colombia": "Bogota",
    "Venezuela": "Caracas", "Thailand": "Bangkok", "Vietnam": "Hanoi", "Indonesia": "Jakarta",
    "Philippines": "Manila", "South Korea": "Seoul", "Ukraine": "Kyiv", "Romania": "Bucharest",
    "Bulgaria": "Sofia", "Serbia": "Belgrade", "Croatia": "Zagreb", "Czech Republic": "Prague",
    "Scotland": "Edinburgh", "Wales": "Cardiff", "Iceland": "Reykjavik", "Estonia": "Tallinn",
    "Latvia": "Riga", "Lithuania": "Vilnius", "Morocco": "Rabat", "Nigeria": "Abuja",
    "Ethiopia": "Addis Ababa", "Saudi Arabia": "Riyadh", "Syria": "Damascus",
    "Lebanon": "Beirut", "Israel": "Jerusalem", "Pakistan": "Islamabad", "Nepal": "Kathmandu",
    "Afghanistan": "Kabul", "Malaysia": "Kuala Lumpur", "Singapore": "Singapore",
    "New Zealand": "Wellington", "Jamaica": "Kingston", "Ecuador": "Quito", "Bolivia": "La Paz",
    "Uruguay": "Montevideo", "Paraguay": "Asuncion", "Ghana": "Accra", "Senegal": "Dakar",
    "Tunisia": "Tunis", "Algeria": "Algiers", "Libya": "Tripoli", "Sudan": "Khartoum",
    "Qatar": "Doha", "Mongolia": "Ulaanbaatar", "Cambodia": "Phnom Penh",
}

FIRST_NAMES = ("Maria", "John", "Anna", "David", "Laura", "Peter", "Emma", "James", "Sofia",
               "Daniel", "Clara", "Thomas", "Alice", "Michael", "Julia", "Robert", "Nina", "Paul",
               "Sarah", "Mark", "Helen", "George", "Lucy", "Henry", "Grace", "Oliver", "Rosa",
               "Samuel", "Emily", "Victor", "Irene", "Oscar", "Linda", "Frank", "Ruth", "Adam",
               "Eva", "Leo", "Kate", "Simon")
LAST_NAMES = ("Lopez", "Smith", "Brown", "Miller", "Garcia", "Wilson", "Taylor", "Clark",
              "Walker", "Young", "King", "Wright", "Hill", "Green", "Baker", "Adams", "Nelson",
              "Carter", "Turner", "Parker", "Evans", "Collins", "Stewart", "Morris", "Murphy",
              "Cook", "Rogers", "Reed", "Bailey", "Bell", "Cooper", "Howard", "Ward", "Cox",
              "Gray", "James", "Watson", "Brooks", "Kelly", "Price")
CITIES = ("Paris", "London", "Rome", "Berlin", "Madrid", "Tokyo", "Cairo", "Lima", "Oslo",
          "Vienna", "Dublin", "Lisbon", "Athens", "Prague", "Warsaw", "Moscow", "Delhi",
          "Sydney", "Toronto", "Chicago", "Boston", "Denver", "Seattle", "Miami", "Dallas",
          "Houston", "Austin", "Phoenix", "Atlanta", "Munich", "Milan", "Naples", "Venice",
          "Geneva", "Zurich", "Brussels", "Amsterdam", "Stockholm", "Helsinki", "Copenhagen")
JOBS = ("teacher", "doctor", "farmer", "baker", "pilot", "nurse", "driver", "painter", "singer",
        "lawyer", "cook", "writer", "builder", "dentist", "waiter", "plumber", "tailor",
        "banker", "actor", "engineer")

ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
        "eighteen", "nineteen")
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def number_word(n: int) -> str:
  """0..99 in English words: 7 -> "seven", 42 -> "forty-two"."""
  if not 0 <= n <= 99:
    raise ValueError(f"number_word takes 0..99, got {n}")
  if n < 20:
    return ONES[n]
  tens, ones = divmod(n, 10)
  return TENS[tens] + (f"-{ONES[ones]}" if ones else "")
