"""Photo sources: TreeOfLife-10M tar shards, iNat21-style class folders, CSV catalogs.

Every source streams `RawSample`s for one worker shard in a fixed order (so a resumed run sees
the same sequence), reports the whole taxonomy for the label bank (identical for all workers),
and fingerprints what it reads (so a resume onto other data is refused). Nothing is loaded
whole: tars stream, folders are listed one class folder at a time, CSVs are read row by row.

Sharding: tar sources give whole tars to workers (tar i goes to worker i % num_shards), folder
and CSV sources give single photos (photo j goes to worker j % num_shards).
"""
from __future__ import annotations

import csv
import dataclasses
import glob
import hashlib
import os
import re
import sys
from typing import Dict, Iterator, List, Optional, Tuple

from absl import logging

from teacher_cache import webdataset
from formats.hashing import update_with_file
from formats.ranks import RANKS
from formats.taxonomy import Lineage, Taxonomy, TaxonomyError, normalize_lineage

INAT_FOLDER = re.compile(r"^(\d+)_([^_]+)_([^_]+)_([^_]+)_([^_]+)_([^_]+)_([^_]+)_([^_]+)$")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
# Column aliases: our catalogs / the real TreeOfLife-10M catalog.csv.
KEY_COLUMNS = ("key", "treeoflife_id")
COMMON_COLUMNS = ("common_name", "common")


class SourceError(ValueError):
    """The --source is missing, of an unknown kind, or malformed. Exit code 2."""


@dataclasses.dataclass
class RawSample:
    """One photo as read from the source, before decoding.

    `error` is a reason to skip the sample that is known before decoding (missing taxonomy,
    non-UTF-8 key, truncated tar); the JPEG is decoded later, in a worker thread.
    """

    key: str
    image_bytes: Optional[bytes]
    lineage: Optional[Lineage]
    common_name: str
    where: str
    error: Optional[str] = None


def printable(text: str) -> str:
    """A str safe for logs/JSON even if it carries undecodable bytes (surrogate escapes)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _lineage_from_row(row: Dict[str, str], where: str) -> Lineage:
    """kingdom..species of a catalog row; TaxonomyError if incomplete or not valid UTF-8 (the
    file is read with surrogateescape, so a bad byte reaches here instead of aborting)."""
    bad = [k for k, v in row.items() if isinstance(v, str) and not is_utf8(v)]
    if bad:
        raise TaxonomyError(f"{where}: column(s) {bad} are not valid UTF-8")
    return normalize_lineage([row.get(r) for r in RANKS], where)


def _first(row: Dict[str, str], names) -> str:
    for n in names:
        if row.get(n):
            return row[n]
    return ""


def _open_csv(path: str):
    # surrogateescape: one bad byte must skip one row, not abort a 10M-row catalog.
    return open(path, "r", newline="", encoding="utf-8", errors="surrogateescape")


def _catalog_lineages(path: str, bad: List[int]) -> Iterator[Tuple[Lineage, str]]:
    """(lineage, common name) per catalog row, streamed; rows without a complete lineage are
    counted in bad[0]."""
    with _open_csv(path) as f:
        for n, row in enumerate(csv.DictReader(f)):
            try:
                yield _lineage_from_row(row, f"{path} row {n + 2}"), _first(row, COMMON_COLUMNS)
            except TaxonomyError:
                bad[0] += 1


class Source:
    """Interface of a photo source; see the module docstring."""

    kind = ""

    def __init__(self, spec: str):
        self.spec = spec

    def iter_shard(self, shard_index: int, num_shards: int) -> Iterator[RawSample]:
        raise NotImplementedError

    def taxonomy(self) -> Taxonomy:
        raise NotImplementedError

    def fingerprint(self) -> str:
        raise NotImplementedError

    def describe(self) -> Dict[str, str]:
        """kind, spec and fingerprint; the fingerprint is computed once per Source object (the
        CLI's early check and prepare_cache share it)."""
        if getattr(self, "_fingerprint", None) is None:
            self._fingerprint = self.fingerprint()
        return {"kind": self.kind, "spec": self.spec, "fingerprint": self._fingerprint}


def expand_braces(pattern: str) -> List[str]:
    """'a-{000..002}.tar' -> ['a-000.tar', 'a-001.tar', 'a-002.tar']; also {x,y} lists."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    body = m.group(1)
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        lo, hi = rng.group(1), rng.group(2)
        width = len(lo) if lo.startswith("0") else 0
        options = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    else:
        options = body.split(",")
    out = []
    for o in options:
        out.extend(expand_braces(pattern[: m.start()] + o + pattern[m.end():]))
    return out


class WebDatasetSource(Source):
    """TreeOfLife-10M webdataset tars: a directory of .tar files or a brace/`*` glob of them.

    Per-sample taxonomy comes from KEY.taxonomic_name.txt (7 words, kingdom..epithet) and
    KEY.common_name.txt. The label bank's taxonomy comes from catalog.csv beside the shards
    when present (key/treeoflife_id, kingdom..species, common_name/common columns); otherwise
    from a scan of every tar's text members.
    """

    kind = "wds"

    def __init__(self, spec: str):
        super().__init__(spec)
        if os.path.isdir(spec):
            paths = sorted(glob.glob(os.path.join(spec, "*.tar")))
            base = spec
        else:
            paths = []
            for p in expand_braces(spec):
                paths.extend(sorted(glob.glob(p)) if any(c in p for c in "*?[") else [p])
            missing = [p for p in paths if not os.path.isfile(p)]
            if missing:
                raise SourceError(f"--source {spec!r}: tar shard(s) not found: {missing[:5]}")
            base = os.path.dirname(paths[0]) if paths else ""
        if not paths:
            raise SourceError(f"--source {spec!r}: no .tar shards found")
        self.tars = paths
        catalog = os.path.join(base, "catalog.csv")
        self.catalog = catalog if os.path.isfile(catalog) else None

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"wds\n")
        for p in self.tars:
            h.update(f"{os.path.basename(p)}\t{os.path.getsize(p)}\n".encode("utf-8", "surrogateescape"))
        if self.catalog:
            update_with_file(h, self.catalog)
        return h.hexdigest()

    def taxonomy(self) -> Taxonomy:
        """Streams the catalog (or the tars' text members): memory grows with the number of
        distinct species, not with the number of photos."""
        bad = [0]
        if self.catalog:
            rows = _catalog_lineages(self.catalog, bad)
            origin = self.catalog
        else:
            logging.info("no catalog.csv beside the shards: scanning %d tars for taxonomy", len(self.tars))
            rows = self._scanned_lineages(bad)
            origin = "a scan of the tars"
        taxonomy = Taxonomy.from_rows(rows)
        if bad[0]:
            logging.warning("taxonomy from %s: %d rows without a complete 7-rank lineage left out", origin, bad[0])
        return taxonomy

    def _scanned_lineages(self, bad):
        for path in self.tars:
            for s in webdataset.iter_tar_samples(path):
                lineage, common, error = self._sample_taxonomy(s)
                if error:
                    bad[0] += 1
                else:
                    yield lineage, common

    @staticmethod
    def _sample_taxonomy(s: webdataset.TarSample):
        raw = s.members.get("taxonomic_name.txt")
        if s.error:
            return None, "", s.error
        if raw is None:
            return None, "", "missing KEY.taxonomic_name.txt"
        try:
            words = raw.decode("utf-8").split()
            common = s.members.get("common_name.txt", b"").decode("utf-8").strip()
        except UnicodeDecodeError:
            return None, "", "taxonomy text is not UTF-8"
        try:
            return normalize_lineage(words, "taxonomic_name.txt"), common, None
        except TaxonomyError as e:
            return None, "", f"incomplete taxonomy: {e}"

    def iter_shard(self, shard_index: int, num_shards: int) -> Iterator[RawSample]:
        for path in self.tars[shard_index::num_shards]:
            for s in webdataset.iter_tar_samples(path):
                lineage, common, error = self._sample_taxonomy(s)
                if error is None and not is_utf8(s.key):
                    error = "key is not valid UTF-8"
                image = s.members.get("jpg")
                if error is None and image is None:
                    error = "missing KEY.jpg"
                yield RawSample(s.key, image, lineage, common, path, error)


class InatFolderSource(Source):
    """iNat21-style tree: class folders NNNNN_Kingdom_Phylum_Class_Order_Family_Genus_species
    holding images. Keys are 'FOLDER/FILESTEM'. No common names (the folder names carry none).
    A directory whose class folders sit one level down (train/, val/) is also accepted."""

    kind = "inat"

    def __init__(self, spec: str):
        super().__init__(spec)
        if not os.path.isdir(spec):
            raise SourceError(f"--source {spec!r}: not a directory")
        self.class_dirs = self._find_class_dirs(spec)
        if not self.class_dirs:
            raise SourceError(f"--source {spec!r}: no iNat21 class folders "
                              "(NNNNN_Kingdom_Phylum_Class_Order_Family_Genus_species) found")

    @staticmethod
    def _class_dirs_in(root: str, prefix: str = "") -> List[Tuple[str, str]]:
        """[(key prefix, absolute folder)] of the class folders directly in root, sorted."""
        return [(prefix + n, os.path.join(root, n)) for n in sorted(os.listdir(root))
                if INAT_FOLDER.match(n) and os.path.isdir(os.path.join(root, n))]

    @classmethod
    def _find_class_dirs(cls, root: str) -> List[Tuple[str, str]]:
        found = cls._class_dirs_in(root)
        if not found:  # one level down, e.g. train/ and val/
            for name in sorted(os.listdir(root)):
                if os.path.isdir(os.path.join(root, name)):
                    found.extend(cls._class_dirs_in(os.path.join(root, name), name + "/"))
        return found

    @staticmethod
    def folder_lineage(rel: str) -> Lineage:
        m = INAT_FOLDER.match(rel.rsplit("/", 1)[-1])
        return normalize_lineage(m.groups()[1:], rel)

    def _files(self, folder: str) -> List[str]:
        return sorted(n for n in os.listdir(folder) if not n.startswith("."))

    def fingerprint(self) -> str:
        """sha256 of the listing (class folders and the file names in each), no stat per file:
        a listing is one readdir per folder, where stat-ing 2.7M photos costs minutes on NFS.
        A photo replaced in place under the same name is not detected (nor was it by size)."""
        h = hashlib.sha256(b"inat-listing\n")
        for rel, full in self.class_dirs:
            h.update(f"{rel}\n".encode("utf-8", "surrogateescape"))
            for n in self._files(full):
                h.update(f"\t{n}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()

    def taxonomy(self) -> Taxonomy:
        # A folder name with undecodable bytes cannot be a taxon; its photos are skipped.
        return Taxonomy.from_rows((self.folder_lineage(rel), "") for rel, _ in self.class_dirs
                                  if is_utf8(rel))

    def iter_shard(self, shard_index: int, num_shards: int) -> Iterator[RawSample]:
        j = 0
        for rel, full in self.class_dirs:
            lineage = self.folder_lineage(rel)
            for n in self._files(full):
                mine = j % num_shards == shard_index
                j += 1
                if not mine:
                    continue
                path = os.path.join(full, n)
                key = f"{rel}/{os.path.splitext(n)[0]}"
                yield _file_sample(key, path, lineage, "")


def _file_sample(key: str, path: str, lineage: Optional[Lineage], common: str,
                 error: Optional[str] = None) -> RawSample:
    if error is None and not (is_utf8(key) and is_utf8(path)):
        error = "file name is not valid UTF-8"
    data = None
    if error is None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            error = f"cannot read file: {e.strerror}"
    return RawSample(key, data, lineage, common, printable(path), error)


class CsvCatalogSource(Source):
    """A CSV with a `path` column (absolute, or relative to the CSV's folder), kingdom..species
    columns (species = epithet or binomial), and optional `key` and `common_name` columns.
    Without a key column the key is the path without its extension. The fingerprint covers the
    CSV bytes (not the image files: hashing 10M photos at start-up would cost a full read)."""

    kind = "csv"

    def __init__(self, spec: str):
        super().__init__(spec)
        if not os.path.isfile(spec):
            raise SourceError(f"--source {spec!r}: CSV catalog not found")
        self.base = os.path.dirname(os.path.abspath(spec))
        with _open_csv(spec) as f:
            header = next(csv.reader(f), None)
        if not header:
            raise SourceError(f"--source {spec!r}: empty CSV")
        missing = [c for c in ("path",) + RANKS if c not in header]
        if missing:
            raise SourceError(f"--source {spec!r}: CSV lacks column(s) {missing}; "
                              f"need path,{','.join(RANKS)} (+ optional key, common_name)")

    def fingerprint(self) -> str:
        return update_with_file(hashlib.sha256(b"csv\n"), self.spec).hexdigest()

    def _rows(self):
        with _open_csv(self.spec) as f:
            yield from enumerate(csv.DictReader(f))

    def taxonomy(self) -> Taxonomy:
        """Streams the CSV (memory grows with the distinct species, not the rows)."""
        bad = [0]
        taxonomy = Taxonomy.from_rows(_catalog_lineages(self.spec, bad))
        if bad[0]:
            logging.warning("taxonomy from %s: %d rows without a complete 7-rank lineage left out", self.spec, bad[0])
        return taxonomy

    def iter_shard(self, shard_index: int, num_shards: int) -> Iterator[RawSample]:
        for n, row in self._rows():
            if n % num_shards != shard_index:
                continue
            rel = row.get("path") or ""
            path = rel if os.path.isabs(rel) else os.path.join(self.base, rel)
            key = _first(row, KEY_COLUMNS) or os.path.splitext(rel)[0]
            error, lineage = None, None
            try:
                lineage = _lineage_from_row(row, f"row {n + 2}")
            except TaxonomyError as e:
                error = f"incomplete taxonomy: {e}"
            if not rel:
                error = "empty path"
            yield _file_sample(key, path, lineage, _first(row, COMMON_COLUMNS), error)


SOURCE_KINDS = {
    WebDatasetSource.kind: WebDatasetSource,
    InatFolderSource.kind: InatFolderSource,
    CsvCatalogSource.kind: CsvCatalogSource,
}


def detect_source_kind(spec: str) -> str:
    """'csv' for a .csv file, 'wds' for a .tar file/glob or a directory of tars, 'inat' for a
    directory of class folders. Raises SourceError when the path does not exist."""
    if any(c in spec for c in "*?[{"):
        return "wds"
    if os.path.isfile(spec):
        if spec.endswith(".csv"):
            return "csv"
        if spec.endswith(".tar"):
            return "wds"
        raise SourceError(f"--source {spec!r}: a file that is neither .csv nor .tar")
    if os.path.isdir(spec):
        if glob.glob(os.path.join(spec, "*.tar")):
            return "wds"
        return "inat"
    raise SourceError(f"--source {spec!r}: no such file or directory")


def open_source(spec: str, kind: str = "auto") -> Source:
    """Factory: the Source for a --source value. Raises SourceError (exit 2) on bad input."""
    if not spec:
        raise SourceError("--source is required")
    if kind == "auto":
        kind = detect_source_kind(spec)
    if kind not in SOURCE_KINDS:
        raise SourceError(f"--source_kind {kind!r} unknown; expected one of {sorted(SOURCE_KINDS)}")
    return SOURCE_KINDS[kind](spec)
