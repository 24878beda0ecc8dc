"""Conversations for the generation task (M2): alpaca, sharegpt and OpenAI `messages` rows,
and instruction records built from a row's fields with templates — all become one shape,
`messages: [{role, content}, …]` with roles system / user / assistant."""

from __future__ import annotations

import string

from verticalize.config import InstructionTemplate

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "model": "assistant",
}


class ConversationError(ValueError):
    """A row that cannot become a conversation; the message says what is wrong."""


def conversation_text(messages: list[dict]) -> str:
    """One text per conversation, for rules, dedup and lengths ("role: content" lines)."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def from_row(fields: dict, layout: str) -> list[dict]:
    """The row's conversation in `layout` (alpaca | sharegpt | messages), checked."""
    if layout == "alpaca":
        messages = _alpaca(fields)
    elif layout == "sharegpt":
        messages = _turns(fields, "conversations", "from", "value", SHAREGPT_ROLES)
    else:
        messages = _turns(fields, "messages", "role", "content", {r: r for r in ROLES})
    return check(messages)


def from_templates(fields: dict, templates: list[InstructionTemplate]) -> list[tuple[str, list]]:
    """(template name, conversation) for every template, filled from the row's fields."""
    out = []
    for t in templates:
        messages = [{"role": "system", "content": _fill(t.system, fields)}] if t.system else []
        messages += [
            {"role": "user", "content": _fill(t.instruction, fields)},
            {"role": "assistant", "content": _fill(t.output, fields)},
        ]
        out.append((t.name, check(messages)))
    return out


def template_fields(template: str) -> list[str]:
    """The field names a Python format string uses ('{review:.300}' → ['review'])."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def _fill(template: str, fields: dict) -> str:
    for name in template_fields(template):
        if fields.get(name) in (None, ""):
            raise ConversationError(f"field '{name}' is empty or missing")
    try:
        return template.format_map({k: v for k, v in fields.items() if v is not None}).strip()
    except (KeyError, ValueError, IndexError) as e:
        raise ConversationError(f"template {template!r} cannot be filled: {e}") from None


def _alpaca(fields: dict) -> list[dict]:
    instruction = str(fields.get("instruction") or "").strip()
    extra = str(fields.get("input") or "").strip()
    messages = []
    if fields.get("system"):
        messages.append({"role": "system", "content": str(fields["system"])})
    for pair in fields.get("history") or []:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise ConversationError("history must be a list of [question, answer] pairs")
        messages += [
            {"role": "user", "content": str(pair[0])},
            {"role": "assistant", "content": str(pair[1])},
        ]
    user = f"{instruction}\n\n{extra}" if instruction and extra else (instruction or extra)
    messages += [
        {"role": "user", "content": user},
        {"role": "assistant", "content": str(fields.get("output") or "")},
    ]
    return messages


def _turns(fields: dict, key: str, role_key: str, text_key: str, roles: dict) -> list[dict]:
    turns = fields.get(key)
    if not isinstance(turns, list) or not turns:
        raise ConversationError(f"field '{key}' must be a non-empty list of turns")
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or role_key not in turn or text_key not in turn:
            raise ConversationError(f"{key}[{i}] needs '{role_key}' and '{text_key}'")
        role = roles.get(str(turn[role_key]).lower())
        if role is None:
            raise ConversationError(
                f"{key}[{i}].{role_key} is {turn[role_key]!r}; use one of {sorted(roles)}"
            )
        messages.append({"role": role, "content": str(turn[text_key] or "")})
    return messages


def check(messages: list[dict]) -> list[dict]:
    """System only first, user/assistant alternating, ending with a non-empty answer."""
    body = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if not body or body[-1]["role"] != "assistant":
        raise ConversationError("the conversation must end with an assistant turn")
    for i, m in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            raise ConversationError(
                f"turn {i + 1} is '{m['role']}' where '{expected}' was expected "
                "(a system turn may only come first; user and assistant alternate)"
            )
        if not m["content"].strip():
            raise ConversationError(f"turn {i + 1} ({m['role']}) is empty")
    return messages
