"""Documents added and removed from the UI.

An upload is untrusted. Its name is cut down to a plain file name (no folders, no control
characters), its type and size are limited, and it is written only inside the uploads
folder. It is read once before it is moved into place, so a broken file never replaces a
working upload of the same name, and an unreadable file is reported, not indexed.
"""
from __future__ import annotations

import glob
import os
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from embeddings import EmbeddingError
from rag.documents import SUPPORTED_SUFFIXES, DocumentError, load_document
from rag.engine import Engine
from rag.store import IndexStateError

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_STEM_CHARS = 120
_NOT_IN_NAMES = set('<>:"/\\|?*')  # separators, and characters Windows forbids in names


class UploadRejected(ValueError):
    """An upload that is not saved; the message says why, in Chinese."""


@dataclass
class UploadResult:
    """What became of one uploaded file."""
    name: str  # the file name it was saved under (or sent with, when rejected)
    status: str  # added | updated | unchanged | rejected
    message: str  # one line for the user, in Chinese
    doc_id: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "message": self.message, "doc_id": self.doc_id}


def safe_filename(name: str) -> str:
    """The file name only: no folders (``../`` included), no control or invisible format
    characters, no leading dots; Chinese and other letters are kept."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(ch for ch in base
                   if ch not in _NOT_IN_NAMES and not unicodedata.category(ch).startswith("C"))
    kept = " ".join(kept.split()).lstrip(". ")  # a leading dot would make it a hidden file
    stem, suffix = os.path.splitext(kept)
    return stem[:MAX_STEM_CHARS] + suffix.lower()


def _target(uploads_dir: Path, name: str) -> Path:
    if Path(name).suffix not in SUPPORTED_SUFFIXES or not Path(name).stem:
        raise UploadRejected(f"只支持 {' '.join(SUPPORTED_SUFFIXES)} 文件")
    uploads_dir.mkdir(parents=True, exist_ok=True)
    target = uploads_dir / name
    # The name has no separators, but an existing symlink of that name could point elsewhere.
    if target.resolve().parent != uploads_dir.resolve():
        raise UploadRejected("文件名不可用")
    return target


def upload_document(engine: Engine, source: Path, uploads_dir: Path,
                    max_bytes: int = MAX_UPLOAD_BYTES) -> UploadResult:
    """Save one uploaded file into ``uploads_dir`` and index it."""
    name = safe_filename(source.name)

    def rejected(why: str, shown: str | None = None) -> UploadResult:
        shown = shown or name or source.name
        return UploadResult(shown, "rejected", f"未加入 {shown}：{why}")
    try:
        target = _target(uploads_dir, name)
        if source.stat().st_size > max_bytes:
            raise UploadRejected(f"文件超过 {max_bytes // (1024 * 1024)} MB")
    except UploadRejected as exc:
        return rejected(str(exc))
    # Staged under its own name in a hidden folder (which indexing skips), so messages
    # about the file name it, and a half-copied file never sits under the final name.
    with tempfile.TemporaryDirectory(dir=uploads_dir, prefix=".upload-") as staging:
        staged = Path(staging) / target.name
        try:
            shutil.copyfile(source, staged)
        except OSError as exc:
            return rejected(f"无法保存（{exc.strerror or exc}）", target.name)
        try:
            load_document(staged)
        except DocumentError as exc:
            return rejected(f"无法读取（{exc}）", target.name)
        os.replace(staged, target)
    try:
        report = engine.index([target], progress=False)
    except (IndexStateError, EmbeddingError) as exc:
        return rejected(f"索引失败（{exc}）", target.name)
    if report.skipped:
        return rejected(f"无法读取（{report.skipped[0][1]}）", target.name)
    changed = report.added + report.updated
    if not changed:
        return UploadResult(target.name, "unchanged", f"{target.name} 与已索引的版本相同，无需更新")
    meta = engine.store.manifest().documents[changed[0]]
    return UploadResult(target.name, "added" if report.added else "updated",
                        f"已加入 {target.name}：《{meta['title']}》，{meta['paragraphs']} 段，现在可以检索",
                        changed[0])


def add_upload(engine: Engine, source: Path, uploads_dir: Path,
               max_bytes: int = MAX_UPLOAD_BYTES) -> str:
    """Save one uploaded file into ``uploads_dir`` and index it; a line saying what happened."""
    return upload_document(engine, source, uploads_dir, max_bytes).message


def remove_uploaded(engine: Engine, doc_ids: list[str], uploads_dir: Path) -> dict[str, dict]:
    """Remove documents from the index, and delete their files when they were uploads
    (and any copy Gradio's upload cache still holds). The removed documents' manifest
    records; KeyError names unknown ones, and then nothing is removed."""
    documents = engine.store.manifest().documents
    engine.remove(list(doc_ids))
    uploads = uploads_dir.resolve()
    for doc_id in doc_ids:
        path = Path(documents[doc_id]["path"]).resolve()
        if uploads in path.parents:
            path.unlink(missing_ok=True)
            purge_cached_copies(path.name)
    return {d: documents[d] for d in doc_ids}


def remove_documents(engine: Engine, doc_ids: list[str], uploads_dir: Path) -> str:
    """``remove_uploaded``, as a line for the user."""
    if not doc_ids:
        return "请先选择要删除的文档"
    try:
        removed = remove_uploaded(engine, doc_ids, uploads_dir)
    except (KeyError, IndexStateError) as exc:
        return f"未删除：{exc.args[0] if exc.args else exc}"
    return "已删除：" + "、".join(f"《{meta['title']}》" for meta in removed.values())


def gradio_cache() -> Path:
    """Where Gradio keeps the files browsers upload (one hash-named folder per file)."""
    from gradio.utils import get_upload_folder
    return Path(get_upload_folder()).resolve()


def discard_cached(path: str | Path) -> None:
    """Delete a file from Gradio's upload cache once it is saved and indexed (or refused):
    the cache serves files to anyone with the link, and a removed document must not stay
    fetchable there. Paths outside the cache are left alone."""
    cache, path = gradio_cache(), Path(path).resolve()
    if cache not in path.parents:
        return
    path.unlink(missing_ok=True)
    if path.parent != cache:
        try:
            path.parent.rmdir()  # its hash folder, if now empty
        except OSError:
            pass


def purge_cached_copies(name: str) -> None:
    """Delete every file called ``name`` from Gradio's upload cache (e.g. left there by an
    upload before a restart)."""
    cache = gradio_cache()
    if cache.is_dir():
        for copy in cache.glob(f"*/{glob.escape(name)}"):
            discard_cached(copy)
