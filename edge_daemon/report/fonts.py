"""Chinese labels in matplotlib: find a CJK font once, or fall back to English-only plot labels.

matplotlib's default DejaVu Sans has no Chinese glyphs; without a CJK font every Chinese label
would print as empty boxes. Debian's `fonts-noto-cjk` (in scripts/setup) provides Noto Sans CJK.
When no CJK font is installed the plots keep their English half and a warning says why; the
HTML text stays bilingual because the browser does its own font fallback.
"""

from __future__ import annotations

import functools
import logging

__all__ = ["cjk_font_family", "bilingual"]

_LOG = logging.getLogger(__name__)

_PREFERRED = (
    "Noto Sans CJK SC",  # fonts-noto-cjk: Simplified Chinese forms first
    "Noto Sans CJK JP",
    "Noto Sans CJK TC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",  # fonts-wqy-zenhei
    "WenQuanYi Micro Hei",
    "AR PL UMing CN",
)


@functools.cache
def cjk_font_family() -> str | None:
    """Name of an installed CJK font matplotlib can use, or None (warned about once)."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    for name in _PREFERRED:
        if name in names:
            return name
    _LOG.warning("no CJK font found (install Debian fonts-noto-cjk): report plots will have English labels only")
    return None


def bilingual(zh: str, en: str, cjk: bool) -> str:
    """'中文 / English' when Chinese can be drawn, else the English alone."""
    return f"{zh} / {en}" if cjk else en
