"""The paper's data regime: which train rows get a rationale, which only a short answer, and which each round
samples; no rationale leaks into the short-answer pool."""

from collections import Counter

import pytest

from reasoner_ray.core.config import ConfigError, build_config
from reasoner_ray.core.data_regime import rationale_pool, rollout_source, short_answer_pool
from reasoner_ray.data.readers import iter_rows


def regime(**data):
    tree = {"data": {"train": {"format": "arithmetic", "split": "train", "limit": 40}, **data},
            "rollout": {"limit": 6}}
    return build_config(tree)


def test_the_pools_split_the_train_rows_in_order():
    config = regime(rationale_fraction=0.25)
    assert (rationale_pool(config).offset, rationale_pool(config).limit) == (0, 10)
    assert (short_answer_pool(config).offset, short_answer_pool(config).limit) == (10, 30)
    # round r samples the r-th slice of rollout.limit questions after the rationale pool
    assert [(rollout_source(config, r).offset, rollout_source(config, r).limit) for r in (1, 2, 3)] == \
        [(10, 6), (16, 6), (22, 6)]
    ids = lambda source: [row.id for row in iter_rows(source, check_image=False)]  # noqa: E731
    everything = ids(config.data.train)
    assert ids(rationale_pool(config)) + ids(short_answer_pool(config)) == everything
    assert ids(rollout_source(config, 2)) == everything[16:22]


def test_all_rows_get_a_rationale_by_default():
    config = regime()
    assert rationale_pool(config) == config.data.train and short_answer_pool(config) is None
    assert rollout_source(config, 1) == rollout_source(config, 3) == config.data.train.model_copy(update={"limit": 6})


def test_a_fraction_needs_the_rows_it_divides():
    with pytest.raises(ConfigError, match="rationale_fraction < 1 needs data.train.limit"):
        build_config({"data": {"rationale_fraction": 0.5}})
    with pytest.raises(ConfigError, match="rationale_fraction"):
        build_config({"data": {"train": {"limit": 10}, "rationale_fraction": 0.0}})


def test_sft_rows_never_carry_a_rationale_from_the_short_answer_pool(tmp_path):
    import json

    from reasoner_ray.train.data import sft_examples
    from reasoner_ray.train.sft import sft_rows

    config = regime(rationale_fraction=0.25)
    # rows with rationales everywhere, as if a file carried them all: only the rationale pool's may be used
    rows = [r.model_copy(update={"rationale": f"because {r.id}"}) for r in iter_rows(config.data.train)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r.model_dump(mode="json")) + "\n" for r in rows[:10]))
    counts = Counter()
    got = sft_rows(config, str(path), counts)
    assert counts["rows"] == 40 and counts["short_answer_rows"] == 30
    assert [r.id for r in got] == [r.id for r in rows]
    examples = sft_examples(got, include_direct=True)
    cot = [e["id"] for e in examples if e["id"].endswith(":cot")]
    assert cot == [f"{r.id}:cot" for r in rows[:10]]  # CoT only for the rationale pool
    assert sum(e["id"].endswith(":direct") for e in examples) == 40
    # distillation off: the train split itself, cut the same way
    config_off = config.model_copy(update={"distill": config.distill.model_copy(update={"enabled": False})})
    assert [r.id for r in sft_rows(config_off, config.data.train.path, Counter())] == [r.id for r in rows]
