"""An item's size as DynamoDB counts it against its 400 KB limit (Developer Guide, "DynamoDB item
sizes and formats"): attribute names and string values as UTF-8 bytes; a number 1 byte per two
significant digits plus 1; null and Boolean 1; a list or map 3 bytes plus 1 per element (and a
map element's name). AWS calls the number rule approximate, so a number is counted one byte over
it (21 bytes for 38 digits, the largest AWS quotes). moto's own check counts less (no overheads,
numbers as their text) and allows 405,000 bytes, so tests measure with this instead."""

from __future__ import annotations

from typing import Any

ITEM_LIMIT_BYTES = 400 * 1024


def item_size(item: dict[str, dict[str, Any]]) -> int:
    """Bytes of an item in DynamoDB's attribute-value form ({"name": {"S": ...}, ...})."""
    return sum(_utf8(name) + attribute_size(value) for name, value in item.items())


def attribute_size(value: dict[str, Any]) -> int:
    """Bytes of one attribute value, its name aside."""
    (kind, content), *rest = value.items()
    assert not rest, f"one type per attribute value: {value}"
    if kind == "S":
        return _utf8(content)
    if kind == "N":
        return number_size(content)
    if kind == "B":
        return len(content)
    if kind in {"BOOL", "NULL"}:
        return 1
    if kind == "L":
        return 3 + sum(1 + attribute_size(element) for element in content)
    if kind == "M":
        return 3 + sum(1 + _utf8(key) + attribute_size(item) for key, item in content.items())
    if kind == "SS":
        return 3 + sum(1 + _utf8(element) for element in content)
    if kind == "NS":
        return 3 + sum(1 + number_size(element) for element in content)
    raise ValueError(f"not a DynamoDB attribute value: {value}")


def number_size(text: str) -> int:
    """A number's bytes from its significant digits (leading and trailing zeros trimmed)."""
    mantissa = text.lstrip("+-").lower().split("e")[0]
    digits = mantissa.replace(".", "").strip("0") or "0"
    return (len(digits) + 1) // 2 + 2


def _utf8(text: str) -> int:
    return len(text.encode("utf-8"))
