"""The error classes of the formats package, one per kind of failure.

Callers catch them by type (never by message): every stage maps FormatError to exit status 2.
"""
from __future__ import annotations


class FormatError(ValueError):
  """A file does not follow its format. The message names the file (and row) and the fault."""


class FormatVersionError(FormatError):
  """A file of a known format but a version this reader does not know. The message says what to do."""


def check_version(document: dict, path: str, what: str, expected: int, remedy: str) -> dict:
  """document, if its format_version is `expected`; else the one refusal (FormatVersionError)."""
  if document.get("format_version") != expected:
    raise refuse_version(path, what, document.get("format_version"), expected, remedy)
  return document


def refuse_version(path: str, what: str, found, expected: int, remedy: str) -> FormatVersionError:
  """The one refusal message for a format version mismatch (returned, for `raise`)."""
  return FormatVersionError(
      f"{path}: format_version is {found!r}; this code reads {what} format version {expected}. "
      f"{remedy}")
