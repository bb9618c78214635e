"""manifest.json of a cache: what identifies a run, and the resume check (no torch here, so
a wrong --source or a foreign cache is refused before the teacher loads)."""
from __future__ import annotations

import os
from typing import Dict, Optional

from formats import atomic
from formats.teacher_cache import FORMAT_VERSION, MANIFEST, REMEDY

# Fields that must agree between a resumed run and the cache it resumes. Source fields are
# checked first (before the teacher loads); the rest once the teacher is known.
SOURCE_FIELDS = ("format_version", "source.kind", "source.fingerprint", "shards.num_shards",
                 "topk_requested", "views")
TEACHER_FIELDS = ("teacher.id", "teacher.pretrained", "teacher.checkpoint_sha256", "preprocessing",
                  "text_template")


class ResumeMismatch(ValueError):
    """The output directory belongs to another source/teacher/configuration. Exit code 2."""


def _get(m: Dict, dotted: str):
    for part in dotted.split("."):
        m = m[part]
    return m


def read_manifest(out_dir: str) -> Optional[Dict]:
    path = os.path.join(out_dir, MANIFEST)
    if not os.path.isfile(path):
        return None
    return atomic.read_json(path)


def check_format(old: Dict, where: str) -> None:
    """ResumeMismatch saying what to do when the cache in `where` is of another format version."""
    found = old.get("format_version")
    if found != FORMAT_VERSION:
        raise ResumeMismatch(
            f"{os.path.join(where, MANIFEST)}: format_version is {found!r}; this teacher_cache "
            f"writes format version {FORMAT_VERSION} and cannot resume or extend it. {REMEDY}")


def check_same(old: Dict, new: Dict, where: str, fields=SOURCE_FIELDS + TEACHER_FIELDS) -> None:
    """Raises ResumeMismatch listing every field in `fields` where old and new differ."""
    diffs = []
    for k in fields:
        try:
            a = _get(old, k)
        except (KeyError, TypeError):
            a = None
        b = _get(new, k)
        if a != b:
            diffs.append(f"{k}: cache has {a!r}, this run has {b!r}")
    if diffs:
        raise ResumeMismatch(
            f"{where} was written by a different run and cannot be resumed with these "
            f"arguments; use a new --out_dir or the original arguments. Differences:\n  "
            + "\n  ".join(diffs))


def check_source_early(out_dir: str, source_desc: Dict, num_shards: int, topk: int,
                       views: Dict) -> None:
    """The part of the resume check that needs no teacher."""
    old = read_manifest(out_dir)
    if old is not None:
        check_format(old, out_dir)
        new = {"format_version": FORMAT_VERSION, "source": source_desc,
               "shards": {"num_shards": num_shards}, "topk_requested": topk, "views": views}
        check_same(old, new, out_dir, SOURCE_FIELDS)
