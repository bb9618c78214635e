"""Reading and writing TreeOfLife-10M style webdataset tar shards (no webdataset dependency).

A sample is a run of consecutive tar members that share a key: the member's path up to the
first '.' of its base name (`dir/abc.taxonomic_name.txt` -> key `dir/abc`, extension
`taxonomic_name.txt`), which is the webdataset convention.
"""
from __future__ import annotations

import dataclasses
import io
import tarfile
from typing import Dict, Iterator, Mapping, Optional

# The caption members of a TreeOfLife-10M sample, besides KEY.jpg.
TEXT_MEMBERS = (
    "taxonomic_name.txt", "scientific_name.txt", "common_name.txt",
    "sci.txt", "com.txt", "taxon.txt", "taxonTag.txt",
    "sci_com.txt", "taxon_com.txt", "taxonTag_com.txt",
)


def split_member_name(name: str):
    """'d/abc.taxon_com.txt' -> ('d/abc', 'taxon_com.txt'); no dot -> (name, '')."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    key = f"{head}/{stem}" if head else stem
    return key, ext if dot else ""


@dataclasses.dataclass
class TarSample:
    """Members of one sample. `error` is set when the tar ended inside this sample."""

    key: str
    members: Dict[str, bytes]
    error: Optional[str] = None


def iter_tar_samples(path: str) -> Iterator[TarSample]:
    """Streams the samples of one tar in file order, reading each member once.

    A truncated or corrupt tar yields the complete samples before the damage and then one
    TarSample with `error` set (key = the damaged sample's key, or the tar path if unknown),
    and stops; the caller decides to count it as skipped. Open errors propagate (OSError).
    """
    current: Optional[TarSample] = None
    with open(path, "rb") as raw:
        try:
            # Stream mode ('r|') never seeks, so the same code reads pipes and object stores.
            tar = tarfile.open(fileobj=raw, mode="r|")
        except (tarfile.TarError, EOFError) as e:
            yield TarSample(key=path, members={}, error=f"unreadable tar: {e}")
            return
        try:
            for info in tar:
                if not info.isfile():
                    continue
                key, ext = split_member_name(info.name)
                # A new key completes the previous sample before this member is read, so
                # damage inside this member never costs the sample before it.
                if current is not None and current.key != key:
                    yield current
                    current = None
                if current is None:
                    current = TarSample(key=key, members={})
                fobj = tar.extractfile(info)
                data = fobj.read() if fobj is not None else b""
                if len(data) != info.size:
                    raise tarfile.ReadError(f"member {info.name!r} is short")
                current.members[ext] = data
        except (tarfile.TarError, EOFError, OSError, ValueError) as e:
            bad_key = current.key if current is not None else path
            yield TarSample(key=bad_key, members=current.members if current else {},
                            error=f"truncated or corrupt tar: {e}")
            return
        finally:
            tar.close()
    if current is not None:
        yield current


def add_sample(tar: tarfile.TarFile, key: str, members: Mapping[str, bytes], mtime: int = 0) -> None:
    """Appends one sample (ext -> bytes) to an open tar; fixed mtime/owner keep shards
    byte-identical for the same input."""
    for ext, data in members.items():
        info = tarfile.TarInfo(name=f"{key}.{ext}")
        info.size = len(data)
        info.mtime = mtime
        info.mode = 0o644
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(data))
