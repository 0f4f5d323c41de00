"""The realistic benchmark corpus: WordNet noun glosses labelled with 8 supersenses.

Read from Debian's ``wordnet-base`` (WordNet's licence permits redistribution with its
notice). Each synset's lexicographer file *is* its supersense, so labels are free and
exact; the text is ``"headword: gloss"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA_NOUN = Path("/usr/share/wordnet/data.noun")
# lexicographer file number -> supersense (WordNet's lexnames)
SUPERSENSES = {
    5: "animal",
    20: "plant",
    13: "food",
    6: "artifact",
    18: "person",
    15: "location",
    8: "body",
    27: "substance",
}
PER_LABEL = 1500
INSTALL_HINT = "sudo apt-get install -y --no-install-recommends wordnet-base"


def load(seed: int, path: Path = DATA_NOUN) -> tuple[list[str], list[int], tuple[str, ...]]:
    """Return texts, labels and label names; ``PER_LABEL`` synsets per supersense."""
    if not path.is_file():
        raise FileNotFoundError(
            f"task=wordnet needs WordNet's noun database at {path}; install it with: {INSTALL_HINT}"
        )
    lexnums = sorted(SUPERSENSES)
    by_label: dict[int, list[str]] = {i: [] for i in range(len(lexnums))}
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith(" ") or "|" not in line:
                continue  # licence header
            head, gloss = line.split("|", 1)
            fields = head.split()
            lexnum = int(fields[1])
            if lexnum not in SUPERSENSES:
                continue
            word = fields[4].replace("_", " ")
            by_label[lexnums.index(lexnum)].append(f"{word}: {gloss.strip()}")
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, items in by_label.items():
        take = rng.choice(len(items), size=min(PER_LABEL, len(items)), replace=False)
        texts += [items[i] for i in sorted(take)]
        labels += [label] * len(take)
    order = rng.permutation(len(texts))
    names = tuple(SUPERSENSES[n] for n in lexnums)
    return [texts[i] for i in order], [labels[i] for i in order], names
