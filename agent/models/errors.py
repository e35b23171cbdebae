"""Errors of the model runtime.

Both are permanent: retrying the same file or the same input gives the same
answer. The registry turns ``ModelRefused`` into a refused status (the agent
goes on without that model); ``ModelError`` goes to the caller, who decides
whether to drop the frame, count it and carry on.
"""

from __future__ import annotations

from agent.errors import PermanentError


class ModelRefused(PermanentError):
    """A model that cannot be used: file missing, truncated or altered, its
    tensors unlike the manifest, the runtime failing to open it, or its
    self-test failing. The message says what was found and what to do."""

    def __init__(self, model: str, detail: str) -> None:
        super().__init__(f"model {model}: {detail}")
        self.model = model
        self.detail = detail


class ModelError(PermanentError):
    """One call failed: an input of the wrong dtype or shape, or the runtime
    raising on it. The model stays loaded; the same input would fail again."""

    def __init__(self, model: str, detail: str) -> None:
        super().__init__(f"model {model}: {detail}")
        self.model = model
        self.detail = detail
