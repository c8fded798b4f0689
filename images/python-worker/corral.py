"""`import corral` inside a sandbox: a language model for tenant python code, without network.

    import corral
    text = corral.lm([{"role": "user", "content": "Say hi"}], temperature=0, max_tokens=50)

The request goes up the worker's protocol channel to corrald, which calls the session's
configured model endpoint with keys the sandbox never sees, and applies the session's settings,
quotas and cache. Errors are raised as corral.LMError with a `type` (lm_rate_limited,
lm_timeout, lm_unavailable, lm_bad_response, lm_not_configured, ...) and the upstream `status`.
Only usable while the worker runs a request of this session (inside a program's entrypoint).
"""

from __future__ import annotations

from typing import Any

import corral_lm
from corral_programs import WorkerError

LMError = WorkerError

__all__ = ["LMError", "lm", "lm_result"]


def lm_result(messages: Any, **settings: Any) -> dict[str, Any]:
    """The whole answer: {content, usage: {prompt_tokens, completion_tokens}, cached}."""
    return corral_lm.port().complete(messages, settings)


def lm(messages: Any, **settings: Any) -> str:
    """The model's reply to `messages` (a list of {role, content}, or one user string)."""
    return lm_result(messages, **settings)["content"]
