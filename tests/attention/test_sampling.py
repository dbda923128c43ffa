"""The causal sample: equal per class where the split allows, seeded, only eligible texts."""

from __future__ import annotations

import numpy as np

from emotion_lab.attention.sampling import causal_sample, stratified
from emotion_lab.config import DataConfig
from tests.conftest import EMOTION


def test_equal_per_class_and_a_small_class_gives_all_it_has():
    labels = np.array([0] * 50 + [1] * 50 + [2] * 4)
    eligible = np.ones(len(labels), dtype=bool)
    eligible[:10] = False
    rows = stratified(labels, eligible, 30, seed=0)
    assert len(rows) == len(set(rows)) == 30 and eligible[rows].all()
    assert np.bincount(labels[rows]).tolist() == [13, 13, 4]
    assert stratified(labels, eligible, 30, seed=0).tolist() == rows.tolist()
    assert stratified(labels, eligible, 30, seed=1).tolist() != rows.tolist()
    assert len(stratified(labels, eligible, 1000, seed=0)) == eligible.sum()


def test_causal_sample_of_the_emotion_validation_split():
    sample = causal_sample(DataConfig(path=str(EMOTION), max_eval_samples=300), None, 60, seed=3)
    assert len(sample.texts) == 60
    assert np.bincount(sample.labels, minlength=6).tolist() == [10] * 6
    assert sample.label_names == ["sadness", "joy", "love", "anger", "fear", "surprise"]
    assert all(len(t.split()) >= 2 for t in sample.texts)
