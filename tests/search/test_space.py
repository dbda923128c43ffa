"""The search space: Hydra's sweep grammar as Optuna distributions, and what a search refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from emotion_lab.errors import SearchError
from emotion_lab.search.space import as_override, grid_space, parse_space
from emotion_lab.search.study import direction_of, open_storage


def test_the_sweep_grammar_becomes_optuna_distributions():
    space = parse_space(
        {
            "lr": "tag(log, interval(1e-5, 1e-3))",
            "trainer.warmup_ratio": "interval(0.0, 0.2)",
            "trainer.batch_size": "choice(16, 32, 64)",
            "trainer.epochs": "range(1, 6, 2)",
            "seed": "1",
        },
        ["init=scratch,pretrained", "trainer.max_grad_norm=0.5"],
    )
    d = space.distributions
    assert d["lr"] == FloatDistribution(1e-5, 1e-3, log=True)
    assert d["trainer.warmup_ratio"] == FloatDistribution(0.0, 0.2)
    assert d["trainer.batch_size"] == CategoricalDistribution([16, 32, 64])
    assert d["trainer.epochs"] == IntDistribution(1, 5, step=2)  # Hydra's range excludes stop
    assert d["init"] == CategoricalDistribution(["scratch", "pretrained"])
    assert space.fixed == ["seed=1", "trainer.max_grad_norm=0.5"]


def test_the_command_line_fixes_a_key_of_the_space():
    space = parse_space(
        {"lr": "interval(1e-5, 1e-3)", "trainer.batch_size": "choice(16, 32)"},
        ["trainer.batch_size=32"],
    )
    assert list(space.distributions) == ["lr"] and space.fixed == ["trainer.batch_size=32"]


def test_an_empty_space_is_refused():
    with pytest.raises(SearchError, match=r"^the search space is empty: nothing in hydra\.sweeper"):
        parse_space({"seed": "1"}, ["lr=1e-4"])


def test_the_grid_takes_choices_and_ranges_and_refuses_an_interval():
    space = parse_space({"lr": "choice(1e-4, 1e-3)", "trainer.epochs": "range(1, 4)"}, [])
    assert grid_space(space) == {"lr": [1e-4, 1e-3], "trainer.epochs": [1, 2, 3]}
    space = parse_space({"lr": "tag(log, interval(1e-5, 1e-3))"}, [])
    with pytest.raises(SearchError, match=r"^the grid sampler takes choice\(\.\.\.\) or range"):
        grid_space(space)


def test_a_log_scale_needs_a_positive_interval():
    with pytest.raises(SearchError, match="a log scale needs low > 0"):
        parse_space({"trainer.warmup_ratio": "tag(log, interval(0.0, 0.2))"}, [])


def test_sampled_values_are_overrides_hydra_parses_back():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for value in (1.2345678901234e-05, 32, True, None, "it's/a:path"):
        (override,) = parser.parse_overrides([as_override("key", value)])
        assert override.value() == value


def test_the_direction_follows_the_monitor():
    assert direction_of("val_loss") == "minimize"
    assert direction_of("val_macro_f1") == direction_of("val_accuracy") == "maximize"


def test_a_storage_that_cannot_be_opened_is_one_line(tmp_path: Path):
    with pytest.raises(SearchError, match=r"^hydra\.sweeper\.storage=sqlite:///.*: cannot open"):
        open_storage(f"sqlite:///{tmp_path}/no/such/dir/optuna.db")
    journal = open_storage(str(tmp_path / "sub" / "optuna.journal"))  # its folder is made
    assert journal.get_all_studies() == []
