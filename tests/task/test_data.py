import json

import numpy as np
import pytest

from fedslim.task.data import load_task
from fedslim.task.partition import partition_indices
from fedslim.task.wordnet import DATA_NOUN


def _load(task, n=400):
    return load_task(task, seed=0, num_examples=n, eval_fraction=0.2)


def test_template_task_is_deterministic_and_has_four_labels():
    a, b = (
        _load("template-cls"),
        load_task("template-cls", seed=0, num_examples=400, eval_fraction=0.2),
    )
    assert a.num_labels >= 4 and a.inputs == b.inputs
    assert set(a.targets) == set(range(a.num_labels))
    other = load_task("template-cls", seed=1, num_examples=400, eval_fraction=0.2)
    assert other.inputs != a.inputs


@pytest.mark.parametrize("spec", ["iid", "dirichlet:0.3", "shards:2"])
def test_partitions_cover_the_pool_and_never_touch_eval(spec):
    task = _load("template-cls", 600)
    parts = [
        partition_indices(task, spec, partition_id=p, num_partitions=4, seed=0) for p in range(4)
    ]
    joined = np.concatenate(parts)
    assert len(set(joined)) == len(joined)  # disjoint
    assert not set(joined) & set(task.eval_idx.tolist())
    assert set(joined) <= set(task.train_idx.tolist())


def test_dirichlet_skews_labels():
    task = _load("template-cls", 800)
    iid = partition_indices(task, "iid", partition_id=0, num_partitions=4, seed=0)
    skew = partition_indices(task, "dirichlet:0.1", partition_id=0, num_partitions=4, seed=0)

    def top_share(idx):
        counts = np.bincount([task.targets[i] for i in idx], minlength=task.num_labels)
        return counts.max() / counts.sum()

    assert top_share(skew) > top_share(iid) + 0.2


def _rows(n=40):
    return [
        {
            "text": f"sample {i} about {'cats' if i % 2 else 'dogs'}",
            "label": "cat" if i % 2 else "dog",
        }
        for i in range(n)
    ]


def test_text_cls_csv_and_jsonl_agree(tmp_path):
    csv_path, jsonl_path = tmp_path / "d.csv", tmp_path / "d.jsonl"
    csv_path.write_text("text,label\n" + "".join(f'"{r["text"]}",{r["label"]}\n' for r in _rows()))
    jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    a, b = _load(f"text-cls:{csv_path}"), _load(f"text-cls:{jsonl_path}")
    assert a.inputs == b.inputs and a.targets == b.targets
    assert a.label_names == ("cat", "dog") and a.kind == "cls"


def test_sft_jsonl(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text(
        "".join(json.dumps({"prompt": f"q{i}?", "response": f"a{i}"}) + "\n" for i in range(30))
    )
    task = _load(f"sft:{path}")
    assert task.kind == "sft" and task.targets[0] == "a0"
    with pytest.raises(ValueError, match="partition=iid"):
        partition_indices(task, "dirichlet:0.5", partition_id=0, num_partitions=2, seed=0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "x"}\n' * 12, "lacks 'text' and 'label'"),
        ("not json\n", "not a JSON object"),
        ('{"text": "x", "label": "a"}\n' * 3, "at least 10 records"),
        ('{"text": "x", "label": "a"}\n' * 12, "2 distinct labels"),
    ],
)
def test_bad_user_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        _load(f"text-cls:{path}")


@pytest.mark.skipif(not DATA_NOUN.is_file(), reason="needs Debian's wordnet-base")
def test_wordnet_has_eight_balanced_supersenses():
    task = _load("wordnet")
    assert task.num_labels == 8 and len(task.inputs) == 8 * 1500
    counts = np.bincount(task.targets)
    assert (counts == 1500).all()
    assert ": " in task.inputs[0]
