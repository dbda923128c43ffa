"""Secrets never leave the process: the one redaction that every exit point applies.

A tracking URI may carry credentials (``http://user:password@host``), and a key named like a
token or password holds one. Whatever the project writes where others can read it (MLflow
params, tags and artifacts, the sweep summary, error lines, log records, Hydra's saved configs
under ``outputs/``) passes through ``redact`` or ``redact_tree`` first. The user name goes too:
``http://***@host`` says that credentials were given without telling whose.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emotion_lab.storage import write_text_atomically

HIDDEN = "***"

# The userinfo of a URI: everything between "scheme://" and the last "@" before the path
# (Hydra escapes the colons of sweep overrides it saves and logs: "http\://user\:pw@host").
_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*\\?://)[^/\s'\"]*@")
# A key whose last word names a secret: password, hf_token, client_secret, api_key, ...
# (not tokenizer, max_tokens or pad_token_id).
_SECRET_WORD = r"(?:password|passwd|secret|token|api[_-]?key|credentials?)"
_SECRET_KEY = re.compile(rf"(?:^|[._-]){_SECRET_WORD}$", re.IGNORECASE)
# "KEY=VALUE" with such a key, as in overrides and URL queries, and "KEY: VALUE" as a YAML line.
_SECRET_ASSIGNMENT = re.compile(
    rf"(?<![\w.-])((?:[\w.-]*[._-])?{_SECRET_WORD})(\s*=\s*)(?!\*\*\*)([^\s,'\"\]}}&]+)",
    re.IGNORECASE,
)
_SECRET_YAML_LINE = re.compile(
    rf"^(\s*(?:-\s+)?(?:[\w.-]*[._-])?{_SECRET_WORD})(:[ \t]+)(?!\*\*\*)(\S.*)$",
    re.IGNORECASE | re.MULTILINE,
)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact(text: str) -> str:
    """``text`` with URI userinfo and the values of secret-named keys replaced by ``***``."""
    if "@" in text:
        text = _USERINFO.sub(rf"\g<1>{HIDDEN}@", text)
    for pattern in (_SECRET_ASSIGNMENT, _SECRET_YAML_LINE):
        text = pattern.sub(rf"\g<1>\g<2>{HIDDEN}", text)
    return text


def redact_tree(tree: Any, key: str = "") -> Any:
    """A config tree (dicts, lists, scalars) with every secret value replaced."""
    if isinstance(tree, Mapping):
        return {k: redact_tree(v, str(k)) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [redact_tree(v, key) for v in tree]
    if key and is_secret_key(key) and tree not in (None, ""):
        return HIDDEN
    return redact(tree) if isinstance(tree, str) else tree


def without_userinfo(uri: str) -> str:
    """The URI a browser should open: no credentials at all (it asks for them itself)."""
    return _USERINFO.sub(r"\g<1>", uri)


def redact_file(path: Path) -> None:
    """Rewrite a text file (Hydra's saved configs) with its secrets redacted, atomically."""
    text = path.read_text()
    clean = redact(text)
    if clean != text:
        write_text_atomically(path, clean)


def install_log_redaction() -> None:
    """Redact every log record as it is made, whichever logger and handler it goes to (Hydra's
    launcher logs each job's overrides; handlers are replaced for every job, the record factory
    is not)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:
            return record  # a broken format string: the handler reports it, as without us
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return record

    factory.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
