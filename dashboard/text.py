"""Strings from Stripe, members and staff, shown as the text they are.

Streamlit renders titles, captions, alerts, page-link, tab, expander and metric labels as
markdown (with its own extras: ``:red[...]`` colours, ``:emoji:`` codes, ``$math$``, and GitHub's
bare-URL and e-mail autolinks). A member named ``**Ann** [x](http://evil)`` would otherwise be
bold with a live link. So every such string passes through one helper before it meets markdown:

- ``md(value)``: the value as literal markdown text. Every character markdown or Streamlit give a
  meaning where it stands is backslash-escaped (CommonMark shows an escaped punctuation
  character as itself): emphasis, code, links, HTML, strikethrough, math, entities and
  directive colons anywhere, block markers (``#``, ``-``, ``1.``) at the start;
  line breaks and runs of spaces fold into one space (a name cannot start a heading, list or
  code block); NUL is dropped. Autolinks work on the text after escaping, so the three patterns
  that trigger them (``http://``, ``www.``, ``name@domain``) get an invisible word joiner
  (U+2060) that breaks the pattern and changes nothing a person sees.
- ``chart(value)``: the value for a plotly label (axis, legend, hover): plotly draws a subset of
  HTML there (``<a href>``, ``<b>``), so ``<``, ``>`` and ``&`` become entities, which plotly shows
  as the characters.

Where a person copies what they read (the member's e-mail and phone), pages use ``st.text``,
which renders no markdown at all, instead of markdown with word joiners in it.
"""

from __future__ import annotations

import html
import re
from typing import Any

WORD_JOINER = "\u2060"
# Characters with a meaning anywhere in a line: emphasis, code, links and images, raw HTML and
# <autolinks>, strikethrough, $math$, entities, and the escape itself.
_SPECIAL = re.compile(r"([\\`*_\[\]<>~$&])")
# Colons: Streamlit directives and emoji codes (:red[...], :smile:, :material/x:).
_DIRECTIVE = re.compile(r":")
# What starts a block only at the start of a line: a heading, list, quote or ordered list.
_LINE_START = re.compile(r"^(?:([#+=>-])|(\d+)([.)]))")
_AUTOLINK = re.compile(r"(?i)(?<=\w)(?=@\w)|(?<=www)(?=\.)|(?<=https)(?=\\?:)|(?<=http)(?=\\?:)|(?<=ftp)(?=\\?:)")


def md(value: Any) -> str:
    """``value`` as markdown that displays exactly its characters (see the module docstring)."""
    text = "" if value is None else str(value)
    text = " ".join(text.replace("\x00", "").split())
    text = _SPECIAL.sub(r"\\\1", text)
    text = _DIRECTIVE.sub(r"\\:", text)
    text = _LINE_START.sub(lambda m: "\\" + m.group(1) if m.group(1) else m.group(2) + "\\" + m.group(3), text)
    return _AUTOLINK.sub(WORD_JOINER, text)


def shown(markdown: str) -> str:
    """What a person reads for markdown made by ``md`` (tests compare it with the original)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace(WORD_JOINER, "")


def chart(value: Any) -> str:
    """``value`` for a plotly label: its characters, never markup."""
    text = "" if value is None else str(value).replace("\x00", "")
    return html.escape(text, quote=False)
