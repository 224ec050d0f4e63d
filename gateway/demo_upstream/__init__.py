"""A deterministic OpenAI- and Anthropic-compatible fake model server.

The gateway's default upstream, and the upstream of tests and benchmarks.

Routes: POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/messages,
/v1/messages/count_tokens; GET /v1/models, /v1/models/{id}, /healthz.

Behaviour in short (one word = one token everywhere):
- answers are English prose seeded by a hash of the prompt text (same prompt,
  same answer, in both dialects), bounded by max_tokens / max_completion_tokens;
- tool calls when tools are offered and not disabled, and the call is forced
  (named tool, "required", {"type": "any"}) or the last user message says
  "weather" / "call" / a tool's name; a turn answering a tool result gets prose;
- reasoning_content when `reasoning_effort` is set or the model name contains
  "reason"; an Anthropic thinking block when `thinking` is enabled;
- logprobs / top_logprobs (chat) and logprobs=k (legacy), deterministic.
"""

from .app import create_demo_app
from .config import DemoConfig

__all__ = ["DemoConfig", "create_demo_app"]
