"""What every entry point shares: quiet library logs with secrets redacted, and errors reported
in one line."""

from __future__ import annotations

import logging
import os
import sys
import traceback

import torch

from emotion_lab.errors import UserError
from emotion_lab.redaction import install_log_redaction, redact
from emotion_lab.storage import describe_space_error


def quiet_libraries() -> None:
    install_log_redaction()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    for name in ("accelerate", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)


def report_error(error: BaseException, debug: bool) -> str:
    """Print ``emotion_lab: error: <one line>`` (plus the traceback with ``debug``); returns the
    line, redacted. A UserError's message already says what to do; anything else is named by
    type."""
    message = str(error).strip() or type(error).__name__
    space = None if isinstance(error, UserError) else describe_space_error(error)
    if space is not None:
        message = space
    elif isinstance(error, torch.OutOfMemoryError):
        message = (
            "out of memory: lower trainer.batch_size (keep the effective batch with "
            "trainer.grad_accum_steps) or trainer.eval_batch_size"
        )
    elif not isinstance(error, UserError):
        message = f"{type(error).__name__}: {message.splitlines()[0]}"
        if not debug:
            message += " (run with debug=true for the traceback)"
    message = redact(message)
    if debug:
        print(redact("".join(traceback.format_exception(error))), file=sys.stderr, end="")
    print(f"emotion_lab: error: {message}", file=sys.stderr, flush=True)
    return message
