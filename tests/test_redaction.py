"""One redaction for every exit point: URI credentials and secret-named keys never get out."""

from __future__ import annotations

import logging

import pytest

from emotion_lab.redaction import (
    install_log_redaction,
    is_secret_key,
    redact,
    redact_tree,
    without_userinfo,
)

SECRET = "hunter2-Zq9"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"http://alice:{SECRET}@127.0.0.1:5000", "http://***@127.0.0.1:5000"),
        (f"tracking.uri=https://alice:{SECRET}@mlflow.example.org/x", None),
        # an unencoded "@" in the password: everything up to the last "@" of the authority goes
        (f"http://alice:{SECRET}@x@host:1/api", "http://***@host:1/api"),
        (f"https://host/path?token={SECRET}&page=2", "https://host/path?token=***&page=2"),
        # as Hydra escapes a sweep override in the configs it saves and the lines it logs
        (f"tracking.uri=http\\://alice\\:{SECRET}@h\\:5000", "tracking.uri=http\\://***@h\\:5000"),
        (f"+model.config_overrides.hf_token={SECRET}", "+model.config_overrides.hf_token=***"),
        (f"MLFLOW_TRACKING_PASSWORD={SECRET}", "MLFLOW_TRACKING_PASSWORD=***"),
        (f"tracking:\n  password: {SECRET}\n  uri: x", "tracking:\n  password: ***\n  uri: x"),
    ],
)
def test_secrets_in_text_are_hidden(text: str, expected: str | None):
    clean = redact(text)
    assert SECRET not in clean
    if expected is not None:
        assert clean == expected


@pytest.mark.parametrize(
    "text",
    [
        "sqlite:////home/me@corp/outputs/mlflow.db",  # an "@" in a path is no userinfo
        "model.tokenizer=gpt2 pad_token_id=50256 max_tokens=3",
        "no secret: it says so in prose",
        "http://127.0.0.1:5000/#/experiments/1",
    ],
)
def test_text_without_secrets_is_unchanged(text: str):
    assert redact(text) == text


def test_config_trees_hide_secret_keys_and_uri_credentials():
    tree = {
        "tracking": {"uri": f"http://alice:{SECRET}@host:5000", "experiment": "e"},
        "model": {"config_overrides": {"api_key": SECRET, "n_layer": 2}, "tokenizer": None},
        "overrides": [f"tracking.uri=http://a:{SECRET}@h", "lr=0.001"],
        "lr": 0.001,
    }
    assert redact_tree(tree) == {
        "tracking": {"uri": "http://***@host:5000", "experiment": "e"},
        "model": {"config_overrides": {"api_key": "***", "n_layer": 2}, "tokenizer": None},
        "overrides": ["tracking.uri=http://***@h", "lr=0.001"],
        "lr": 0.001,
    }
    assert is_secret_key("model.config_overrides.hf_token")
    assert not is_secret_key("model.tokenizer")


def test_a_ui_link_has_no_userinfo_at_all():
    assert without_userinfo(f"http://alice:{SECRET}@host:5000/#/x") == "http://host:5000/#/x"


def test_log_records_are_redacted_whatever_handler_they_reach(caplog: pytest.LogCaptureFixture):
    install_log_redaction()
    install_log_redaction()  # idempotent: one wrapper, not two
    with caplog.at_level(logging.INFO):
        logging.getLogger("hydra.launcher.test").info(
            "\t#0 : tracking.uri=%s", f"http://a:{SECRET}@h"
        )
    assert caplog.messages == ["\t#0 : tracking.uri=http://***@h"]
