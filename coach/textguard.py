"""Text from a call is hostile input: bounded before any detector reads it, and read only by regular
expressions that cannot backtrack exponentially.

Python's ``re`` backtracks. A quantifier nested in another (``(a+)*``, ``(\\w+[-.])*``) can try
exponentially many ways to split one run of text before it fails, and a transcript is text anyone on
a call can steer (a spelled name comes out of Whisper as "S-M-I-T-H-..."). So every pattern that
reads transcripts keeps to one rule, checked for all of them by the tests: **a quantifier inside a
repeated group is possessive (``\\w++``) or atomic (``(?>...)``)**, so each position of the text is
split one way only; what is left is at most polynomial, and :data:`MAX_TEXT_CHARS` bounds it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from types import ModuleType

try:  # Python 3.11+
    import re._constants as _c  # type: ignore[import-not-found]
    import re._parser as _parser  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _parser  # type: ignore[no-redef]

# One final is at most 28 s of speech: about 100 words, 600 characters. Anything longer is not speech.
MAX_TEXT_CHARS = 2000


def bounded(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` cut to ``limit`` characters (at a space where there is one near the end)."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", limit - 100, limit)
    return text[: cut if cut > 0 else limit]


_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT}


def backtracking_nests(pattern: re.Pattern[str] | str) -> list[str]:
    """Where ``pattern`` nests a backtracking quantifier inside a repeated group: empty when it keeps
    the rule above. Each finding names the inner quantifier's text span as ``re`` parsed it."""
    source = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
    flags = pattern.flags if isinstance(pattern, re.Pattern) else 0
    found: list[str] = []

    def walk(items, inside_repeat: bool) -> None:
        for op, av in items:
            if op in _REPEATS:
                low, high, body = av
                repeats = high > 1
                if inside_repeat and repeats:
                    found.append(f"{'*' if high == _c.MAXREPEAT else '{%d,%d}' % (low, high)} quantifier inside a repeated group: {_show(body)}")
                walk(body, inside_repeat or repeats)
            elif op in (_c.POSSESSIVE_REPEAT, _c.ATOMIC_GROUP):
                body = av[2] if op == _c.POSSESSIVE_REPEAT else av
                walk(body, False)  # cannot give back what it took: one way through
            elif op == _c.SUBPATTERN:
                walk(av[-1], inside_repeat)
            elif op == _c.BRANCH:
                for branch in av[1]:
                    walk(branch, inside_repeat)
            elif op in (_c.ASSERT, _c.ASSERT_NOT):
                walk(av[1], inside_repeat)
            elif op == _c.GROUPREF_EXISTS:
                for branch in av[1:]:
                    if branch is not None:
                        walk(branch, inside_repeat)

    walk(_parser.parse(source, flags), False)
    return found


def _show(body) -> str:
    return str(body)[:80]


def patterns_in(modules: Iterable[ModuleType]) -> Iterator[tuple[str, re.Pattern[str]]]:
    """Every compiled pattern a module holds at its top level, in a tuple/list/dict of them, or in an
    object's ``pattern``/``veto`` attributes (the trigger rules): what the regex test checks."""
    for module in modules:
        for name, value in vars(module).items():
            for i, item in enumerate(_flatten(value)):
                yield f"{module.__name__}.{name}[{i}]", item


def _flatten(value, depth: int = 0) -> Iterator[re.Pattern[str]]:
    if depth > 3:
        return
    if isinstance(value, re.Pattern):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _flatten(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _flatten(item, depth + 1)
    elif hasattr(value, "__dataclass_fields__"):
        for field in value.__dataclass_fields__:
            yield from _flatten(getattr(value, field, None), depth + 1)
