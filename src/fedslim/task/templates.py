"""The embedded task: generated sentences about one of four topics.

Non-trivial on purpose: every sentence mixes topic words with neutral filler, a quarter
carry a distractor word from another topic, some topic words are shared by two topics,
and 5% of labels are flipped, so the ceiling is below 100% and a model must weigh
evidence rather than spot one token. Deterministic in the seed.
"""

from __future__ import annotations

import numpy as np

LABELS = ("sports", "weather", "cooking", "finance")

TOPIC_WORDS = {
    "sports": [
        "goal",
        "coach",
        "match",
        "striker",
        "league",
        "referee",
        "stadium",
        "score",
        "penalty",
        "team",
        "season",
        "keeper",
    ],
    "weather": [
        "rain",
        "storm",
        "cloud",
        "forecast",
        "wind",
        "snow",
        "thunder",
        "sunny",
        "humid",
        "frost",
        "season",
        "pressure",
    ],
    "cooking": [
        "oven",
        "recipe",
        "garlic",
        "butter",
        "simmer",
        "flour",
        "knife",
        "sauce",
        "bake",
        "onion",
        "taste",
        "pressure",
    ],
    "finance": [
        "stock",
        "bond",
        "market",
        "profit",
        "loan",
        "interest",
        "bank",
        "share",
        "budget",
        "taste",
        "score",
        "team",
    ],
}
SUBJECTS = [
    "the report",
    "my friend",
    "a neighbour",
    "the paper",
    "our group",
    "she",
    "he",
    "everyone",
    "the old man",
    "a student",
    "the radio",
    "they",
]
VERBS = [
    "mentioned",
    "talked about",
    "worried about",
    "noticed",
    "described",
    "liked",
    "argued over",
    "asked about",
    "wrote about",
    "ignored",
]
FILLER = [
    "today",
    "again",
    "in the morning",
    "last week",
    "quietly",
    "at length",
    "twice",
    "with a smile",
    "for hours",
    "near the river",
    "after lunch",
    "on monday",
]
TEMPLATES = [
    "{s} {v} the {w1} {f}",
    "{s} {v} the {w1} and the {w2}",
    "{f}, {s} {v} the {w1}",
    "{s} {v} a {w1} {f} and then the {w2}",
    "the {w1} was all {s} {v} {f}",
]

LABEL_NOISE = 0.05
DISTRACTOR_RATE = 0.25


def generate(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Return ``n`` (text, label) pairs, balanced over the four labels."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % len(LABELS)
        words = TOPIC_WORDS[LABELS[label]]
        w1, w2 = (words[j] for j in rng.choice(len(words), size=2, replace=False))
        if rng.random() < DISTRACTOR_RATE:
            other = LABELS[(label + 1 + rng.integers(len(LABELS) - 1)) % len(LABELS)]
            w2 = TOPIC_WORDS[other][rng.integers(len(TOPIC_WORDS[other]))]
        template = TEMPLATES[rng.integers(len(TEMPLATES))]
        text = template.format(
            s=SUBJECTS[rng.integers(len(SUBJECTS))],
            v=VERBS[rng.integers(len(VERBS))],
            f=FILLER[rng.integers(len(FILLER))],
            w1=w1,
            w2=w2,
        )
        if rng.random() < LABEL_NOISE:
            label = int(rng.integers(len(LABELS)))
        texts.append(text)
        labels.append(label)
    order = rng.permutation(n)
    return [texts[i] for i in order], [labels[i] for i in order]
